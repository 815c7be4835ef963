// Small read-only helpers over X.509 objects: serial numbers in the contract's format,
// validity times as Unix time, URI SANs, and file/PEM reading.
#pragma once

#include "ossl.h"
#include "result.h"

#include <ctime>
#include <string>
#include <vector>

namespace zt {

// docs/contracts.md section 1: lowercase hex, no leading zeros, no separators
// (Python's format(serial, "x")). Zero is "0"; a (non-conforming) negative serial keeps "-".
std::string serial_hex(const ASN1_INTEGER* serial);
std::string cert_serial_hex(const X509* cert);

// Seconds since the epoch; 0 when `t` is null or unparsable.
std::time_t asn1_time_to_unix(const ASN1_TIME* t);

// RFC 3339 UTC, second precision ("2026-11-28T17:30:00Z").
std::string rfc3339(std::time_t t);

// The URI entries of the subjectAltName extension, in certificate order.
std::vector<std::string> uri_sans(const X509* cert);

// Reads a whole file. The error names the path and errno text.
Result<std::string> read_file(const std::string& path);

// Every certificate in a PEM blob, in order. An error when there is none or one is corrupt.
Result<std::vector<X509Ptr>> parse_pem_certs(const std::string& pem, const std::string& what);

// The subject as a one-line RFC 2253 string, for logs and messages.
std::string name_oneline(const X509_NAME* name);

}  // namespace zt
