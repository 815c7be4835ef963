#include "tls_context.h"

#include <openssl/pem.h>

namespace zt {
namespace {

// Server-side session ID context; required by OpenSSL whenever client certificates are used.
constexpr unsigned char kSessionIdContext[] = "zt-service";

// TLS 1.2 suites, both directions: forward-secret key exchange (ECDHE) with an AEAD cipher
// only. No CBC suites (the MAC-then-encrypt padding oracles of RFC 7457 section 2.4, Lucky
// Thirteen), no static-RSA key exchange, no SHA-1 MACs; RFC 7525 section 4.2's recommended
// suites plus ChaCha20-Poly1305 (RFC 7905). RSA variants are listed so an RSA identity works
// too. TLS 1.3 suites are all AEAD (RFC 8446 section 9.1): OpenSSL's default set stays.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

Result<SslCtxPtr> new_ctx(const SSL_METHOD* method, const Identity& id, const std::string& side) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(method));
  if (!ctx) return fail(side + ": SSL_CTX_new failed: " + drain_openssl_errors());
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    return fail(side + ": cannot restrict to TLS 1.2-1.3: " + drain_openssl_errors());
  }
  if (SSL_CTX_set_cipher_list(c, kTls12Ciphers) != 1) {
    return fail(side + ": cannot set the TLS 1.2 cipher list: " + drain_openssl_errors());
  }
  // No renegotiation in either direction (RFC 5746 only patches it; nothing here needs it):
  // a client's renegotiating ClientHello gets a no_renegotiation alert, and our outbound
  // client answers an upstream's HelloRequest with the same alert.
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate(c, id.leaf.get()) != 1) {
    return fail(side + ": cannot use the certificate: " + drain_openssl_errors());
  }
  for (const auto& inter : id.intermediates) {
    if (SSL_CTX_add1_chain_cert(c, inter.get()) != 1) {
      return fail(side + ": cannot add the chain: " + drain_openssl_errors());
    }
  }
  if (SSL_CTX_use_PrivateKey(c, id.key.get()) != 1 || SSL_CTX_check_private_key(c) != 1) {
    return fail(side + ": the private key does not match the certificate: " + drain_openssl_errors());
  }
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return fail(side + ": X509_STORE_new failed");
  SSL_CTX_set_cert_store(c, store);  // the context owns it now
  for (const auto& root : id.bundle) {
    if (X509_STORE_add_cert(store, root.get()) != 1) {
      return fail(side + ": cannot add a bundle certificate: " + drain_openssl_errors());
    }
  }
  return ctx;
}

Status add_stock_crls(SSL_CTX* ctx, const std::string& pem) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  BioPtr bio = memory_bio(pem);
  int count = 0;
  for (;;) {
    X509CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!crl) break;
    if (X509_STORE_add_crl(store, crl.get()) != 1) {
      return fail("cannot add a CRL to the store: " + drain_openssl_errors());
    }
    ++count;
  }
  ERR_clear_error();
  if (count == 0) return fail("no CRL in the stock CRL PEM");
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);  // the leaf, as in the measurement we compare
  return ok_status();
}

}  // namespace

Result<std::shared_ptr<const TlsContexts>> build_contexts(std::shared_ptr<const Identity> identity,
                                                          std::shared_ptr<const CrlIndex> crl,
                                                          const ContextOptions& options,
                                                          const std::string& stock_crl_pem) {
  auto out = std::make_shared<TlsContexts>();
  bool indexed = options.revocation == RevocationMode::Indexed;
  out->verifier = std::make_unique<PeerVerifier>(identity->id.trust_domain(), indexed ? crl : nullptr,
                                                 options.stale_mode, options.on_stale);
  out->identity = std::move(identity);
  out->crl = std::move(crl);

  auto server = new_ctx(TLS_server_method(), *out->identity, "server context");
  if (!server) return fail(server.error());
  SSL_CTX* s = server.value().get();
  SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_session_id_context(s, kSessionIdContext, sizeof kSessionIdContext - 1);
  SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(s, 0);

  auto client = new_ctx(TLS_client_method(), *out->identity, "client context");
  if (!client) return fail(client.error());
  SSL_CTX* c = client.value().get();
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);

  if (!indexed) {
    for (SSL_CTX* ctx : {s, c}) {
      if (auto st = add_stock_crls(ctx, stock_crl_pem); !st) return fail(st.error());
    }
  }
  out->verifier->install(s);
  out->verifier->install(c);
  out->server = std::shared_ptr<SSL_CTX>(std::move(server).value().release(), SSL_CTX_free);
  out->client = std::shared_ptr<SSL_CTX>(std::move(client).value().release(), SSL_CTX_free);
  return std::shared_ptr<const TlsContexts>(std::move(out));
}

}  // namespace zt
