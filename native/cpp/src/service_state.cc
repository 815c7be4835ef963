#include "service_state.h"

#include <sys/stat.h>

namespace zt {

std::string effective_crl_path(const Config& cfg) {
  if (cfg.crl) return *cfg.crl;
  std::string dflt = cfg.cert_dir + "/crl.pem";
  struct stat st {};
  return stat(dflt.c_str(), &st) == 0 ? dflt : "";
}

Result<std::shared_ptr<const ServiceState>> load_state(const Config& cfg,
                                                       std::function<void(std::time_t)> on_stale,
                                                       const ServiceState* previous) {
  auto identity = load_identity(cfg.cert_dir);
  if (!identity) return fail("identity: " + identity.error());

  std::shared_ptr<const CrlIndex> crl;
  std::string crl_path = effective_crl_path(cfg);
  if (crl_path.empty() && previous != nullptr && !previous->crl_path.empty()) {
    return fail("crl: " + previous->crl_path + " is gone; keeping the CRL in use");
  }
  if (!crl_path.empty()) {
    auto loaded = CrlIndex::load_file(crl_path, identity.value()->ca_certs(), std::time(nullptr));
    if (!loaded) return fail("crl: " + loaded.error());
    crl = std::move(loaded).value();
  }

  std::shared_ptr<const Policy> policy;
  if (cfg.policy) {
    auto loaded = Policy::load_file(*cfg.policy);
    if (!loaded) return fail("policy: " + loaded.error());
    policy = std::move(loaded).value();
  }

  ContextOptions options;
  options.stale_mode = cfg.crl_stale;
  options.on_stale = std::move(on_stale);
  auto tls = build_contexts(identity.value(), crl, options);
  if (!tls) return fail("tls: " + tls.error());

  auto state = std::make_shared<ServiceState>();
  state->tls = std::move(tls).value();
  state->policy = std::move(policy);
  state->crl_path = crl_path;
  return std::shared_ptr<const ServiceState>(std::move(state));
}

}  // namespace zt
