// Command loadgen drives certificate issuance over HTTPS keep-alive and reports certs/s, p50, p99.
//
// The same compiled client measures zt-ra (POST /v1/issue, bearer bootstrap token) and step-ca
// (POST /1.0/sign, a JWK provisioner's one-time token): one client for both, so the comparison
// is of the servers and not of two load generators. Everything a request needs is made before
// the clock starts: one fresh P-256 key and CSR per job (its only SAN the job's SPIFFE URI), the
// tokens (made by bench/vs_stepca.py, one per line of -jobs), and one TLS connection per client
// (verified against -root), opened by a warm-up GET.
//
// Output: one JSON object on stdout (see result), with the first -sample answers' certificate
// chains for the driver to check (same SAN, same lifetime, chain verifies).
package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"
)

// job is one line of the -jobs file: a one-time token and the SPIFFE ID it may be spent on.
type job struct {
	Token string `json:"token"`
	SAN   string `json:"san"`
}

type prepared struct {
	san  string
	body []byte
	auth string
}

type sample struct {
	SAN   string   `json:"san"`
	Chain []string `json:"chain"` // leaf first, PEM
}

type result struct {
	Server     string   `json:"server"`
	Clients    int      `json:"clients"`
	Requests   int      `json:"requests"`
	OK         int      `json:"ok"`
	Errors     int      `json:"errors"`
	FirstError string   `json:"first_error,omitempty"`
	Seconds    float64  `json:"seconds"`
	CertsPerS  float64  `json:"certs_per_s"`
	P50Ms      float64  `json:"p50_ms"`
	P99Ms      float64  `json:"p99_ms"`
	MaxMs      float64  `json:"max_ms"`
	Samples    []sample `json:"samples"`
}

func main() {
	server := flag.String("server", "zt", "zt (POST /v1/issue) or step (POST /1.0/sign)")
	base := flag.String("url", "", "server base URL, e.g. https://127.0.0.1:8443")
	rootFile := flag.String("root", "", "PEM root(s) to verify the server against")
	jobsFile := flag.String("jobs", "", "JSON lines {token, san}, one request each")
	clients := flag.Int("clients", 8, "concurrent keep-alive connections")
	nSample := flag.Int("sample", 5, "answers whose chains are kept for checking")
	flag.Parse()
	if err := run(*server, *base, *rootFile, *jobsFile, *clients, *nSample); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(server, base, rootFile, jobsFile string, clients, nSample int) error {
	if server != "zt" && server != "step" {
		return fmt.Errorf("-server must be zt or step, not %q", server)
	}
	if _, err := url.Parse(base); err != nil || base == "" {
		return fmt.Errorf("-url: %q is not a URL", base)
	}
	if clients < 1 {
		return errors.New("-clients must be at least 1")
	}
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return fmt.Errorf("%s holds no PEM certificate", rootFile)
	}
	jobs, err := readJobs(jobsFile)
	if err != nil {
		return err
	}
	reqs := make([]prepared, len(jobs))
	for i, j := range jobs {
		if reqs[i], err = prepare(server, j); err != nil {
			return err
		}
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		ForceAttemptHTTP2:   false,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	client := &http.Client{Transport: transport, Timeout: 60 * time.Second}
	warm := "/v1/bundle"
	endpoint := "/v1/issue"
	if server == "step" {
		warm, endpoint = "/health", "/1.0/sign"
	}
	if err := warmUp(client, base+warm, clients); err != nil {
		return err
	}

	lat := make([]time.Duration, len(reqs))
	bodies := make([][]byte, len(reqs))
	errs := make([]error, len(reqs))
	next := make(chan int, len(reqs))
	for i := range reqs {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				bodies[i], errs[i] = post(client, base+endpoint, reqs[i], i < nSample)
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := result{Server: server, Clients: clients, Requests: len(reqs), Seconds: elapsed.Seconds()}
	ok := make([]time.Duration, 0, len(reqs))
	for i, e := range errs {
		if e != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = e.Error()
			}
			continue
		}
		ok = append(ok, lat[i])
		if bodies[i] != nil {
			s, err := sampleOf(server, reqs[i].san, bodies[i])
			if err != nil {
				return err
			}
			res.Samples = append(res.Samples, s)
		}
	}
	res.OK = len(ok)
	res.CertsPerS = float64(res.OK) / elapsed.Seconds()
	sort.Slice(ok, func(a, b int) bool { return ok[a] < ok[b] })
	res.P50Ms, res.P99Ms = ms(percentile(ok, 50)), ms(percentile(ok, 99))
	if len(ok) > 0 {
		res.MaxMs = ms(ok[len(ok)-1])
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func readJobs(path string) ([]job, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []job
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var j job
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, len(out)+1, err)
		}
		out = append(out, j)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no jobs", path)
	}
	return out, sc.Err()
}

// prepare makes the job's key and CSR (one URI SAN, no subject) and the request body.
func prepare(server string, j job) (prepared, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return prepared{}, err
	}
	u, err := url.Parse(j.SAN)
	if err != nil {
		return prepared{}, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return prepared{}, err
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	p := prepared{san: j.SAN}
	if server == "zt" {
		p.body, err = json.Marshal(map[string]string{"csr": csr})
		p.auth = "Bearer " + j.Token
	} else {
		p.body, err = json.Marshal(map[string]string{"csr": csr, "ott": j.Token})
	}
	return p, err
}

func warmUp(client *http.Client, u string, n int) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := client.Get(u)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("warm-up GET %s: %s", u, resp.Status)
			}
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func post(client *http.Client, u string, p prepared, keep bool) ([]byte, error) {
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(p.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.auth != "" {
		req.Header.Set("Authorization", p.auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	if keep {
		return body, nil
	}
	return nil, nil
}

// sampleOf pulls the issued chain out of either server's answer.
func sampleOf(server, san string, body []byte) (sample, error) {
	s := sample{SAN: san}
	if server == "zt" {
		var r struct {
			Certificate string `json:"certificate"`
			Chain       string `json:"chain"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return s, fmt.Errorf("zt-ra answer: %w", err)
		}
		s.Chain = splitPEM(r.Chain)
		if len(s.Chain) == 0 {
			s.Chain = []string{r.Certificate}
		}
		return s, nil
	}
	var r struct {
		Crt       string   `json:"crt"`
		CertChain []string `json:"certChain"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return s, fmt.Errorf("step-ca answer: %w", err)
	}
	s.Chain = r.CertChain
	if len(s.Chain) == 0 {
		s.Chain = []string{r.Crt}
	}
	return s, nil
}

func splitPEM(text string) []string {
	var out []string
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		out = append(out, string(pem.EncodeToMemory(b)))
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
