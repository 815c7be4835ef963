// Command handshaker makes full mutual-TLS handshakes against one server and reports how many
// completed (bench/handshakes.py, issue 15).
//
// Every handshake is a new TCP connection and a new TLS 1.3 session (no session cache, so
// nothing is resumed) with the client certificate -cert/-key, the server's chain verified
// against -roots (the peers are named by SPIFFE URI, so no host name check), one key share
// (X25519) so no server pays for a HelloRetryRequest or a hybrid key exchange. A handshake
// counts only when the server accepted the client: under TLS 1.3 the client finishes before
// the server has judged its certificate, so the client then sends close_notify and reads until
// the server closes; a refusal arrives as an alert, an accepted connection ends in a clean EOF.
// One compiled client for every server, so the comparison is of the servers.
//
// Output: one JSON object on stdout (see result).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Addr       string  `json:"addr"`
	Handshakes int     `json:"handshakes"`
	Conns      int     `json:"conns"`
	OK         int     `json:"ok"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	Protocol   string  `json:"protocol,omitempty"`
	Suite      string  `json:"suite,omitempty"`
	Group      string  `json:"group,omitempty"`
	Resumed    int     `json:"resumed"`
}

func main() {
	addr := flag.String("addr", "", "server HOST:PORT")
	certFile := flag.String("cert", "", "client certificate chain, PEM (leaf first)")
	keyFile := flag.String("key", "", "client private key, PEM")
	rootsFile := flag.String("roots", "", "PEM roots the server's chain must verify against")
	n := flag.Int("n", 1000, "handshakes to make")
	conns := flag.Int("conns", 4, "connections in flight at once")
	timeout := flag.Duration("timeout", 10*time.Second, "per-handshake deadline")
	flag.Parse()
	cfg, err := config(*certFile, *keyFile, *rootsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "handshaker:", err)
		os.Exit(2)
	}
	out := run(*addr, cfg, *n, *conns, *timeout)
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}

func config(certFile, keyFile, rootsFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(rootsFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + rootsFile)
	}
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		CurvePreferences:       []tls.CurveID{tls.X25519},
		SessionTicketsDisabled: true,
		// The chain is verified below, without a host name: the servers are named by SPIFFE URI.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			return err
		},
	}, nil
}

// one makes a handshake and returns its connection state once the server has accepted it.
func one(addr string, cfg *tls.Config, timeout time.Duration) (tls.ConnectionState, error) {
	raw, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(timeout)); err != nil {
		return tls.ConnectionState{}, err
	}
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	cs := c.ConnectionState()
	if err := c.CloseWrite(); err != nil {
		return cs, err
	}
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, io.EOF) {
				return cs, nil
			}
			return cs, fmt.Errorf("after the handshake: %w", err)
		}
	}
}

func run(addr string, cfg *tls.Config, n, conns int, timeout time.Duration) result {
	var next, ok, resumed atomic.Int64
	var mu sync.Mutex
	out := result{Addr: addr, Handshakes: n, Conns: conns}
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				cs, err := one(addr, cfg, timeout)
				mu.Lock()
				if err != nil {
					out.Errors++
					if out.FirstError == "" {
						out.FirstError = err.Error()
					}
				} else if out.Protocol == "" {
					out.Protocol = tls.VersionName(cs.Version)
					out.Suite = tls.CipherSuiteName(cs.CipherSuite)
					out.Group = cs.CurveID.String()
				}
				mu.Unlock()
				if err == nil {
					ok.Add(1)
					if cs.DidResume {
						resumed.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	out.Seconds = time.Since(start).Seconds()
	out.OK = int(ok.Load())
	out.Resumed = int(resumed.Load())
	if out.Seconds > 0 {
		out.PerSecond = float64(out.OK) / out.Seconds
	}
	return out
}
