// RAII owners for OpenSSL objects, and the one place that turns the OpenSSL error queue
// into text.
//
// Every OpenSSL object the service creates is held by one of these unique_ptr aliases from
// the moment it is created, so an early return on an error path can never leak it. Objects
// shared between threads (an SSL_CTX used by every connection made while it was current) are
// held by std::shared_ptr with the matching free function instead.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

namespace zt {

template <auto FreeFn>
struct OsslDeleter {
  template <class T>
  void operator()(T* p) const noexcept {
    FreeFn(p);
  }
};

using X509Ptr = std::unique_ptr<X509, OsslDeleter<X509_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, OsslDeleter<X509_CRL_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, OsslDeleter<X509_NAME_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OsslDeleter<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OsslDeleter<X509_STORE_CTX_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OsslDeleter<EVP_PKEY_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OsslDeleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OsslDeleter<SSL_free>>;
using BioPtr = std::unique_ptr<BIO, OsslDeleter<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, OsslDeleter<BN_free>>;
using AsnIntegerPtr = std::unique_ptr<ASN1_INTEGER, OsslDeleter<ASN1_INTEGER_free>>;
using AsnTimePtr = std::unique_ptr<ASN1_TIME, OsslDeleter<ASN1_TIME_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslDeleter<GENERAL_NAMES_free>>;
using IssuingDistPointPtr = std::unique_ptr<ISSUING_DIST_POINT, OsslDeleter<ISSUING_DIST_POINT_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslDeleter<EVP_PKEY_CTX_free>>;
using X509AlgorPtr = std::unique_ptr<X509_ALGOR, OsslDeleter<X509_ALGOR_free>>;

struct X509StackDeleter {
  void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_pop_free(s, X509_free); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;

// Takes a new reference on `x` and returns an owner for it.
inline X509Ptr up_ref(X509* x) {
  X509_up_ref(x);
  return X509Ptr(x);
}
inline EvpPkeyPtr up_ref(EVP_PKEY* k) {
  EVP_PKEY_up_ref(k);
  return EvpPkeyPtr(k);
}

// Drains the calling thread's OpenSSL error queue into one line
// ("error:0A000086:SSL routines::certificate verify failed; ..."). Empty when the queue was
// empty. Always leaves the queue empty, so the next operation starts clean.
std::string drain_openssl_errors();

// A memory BIO over `data` (not copied; `data` must outlive the BIO).
BioPtr memory_bio(const std::string& data);

}  // namespace zt
