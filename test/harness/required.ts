// Skip policy for suites that need an external service (PostgreSQL, Ceph RGW).
//
//   test("...", async (t) => {
//     if (!requireOrSkip("postgres", postgresAvailable(), t)) return;
//     ...
//   });
//   describe("...", { skip: !requireOrSkip("rgw", rgwAvailable()) }, () => { ... });
//
// With CKPT_REQUIRE_SERVICES=1 (set in CI) a missing service is an error, so suites can never
// silently stop running there. Otherwise the suite is skipped with a loud warning on stderr.

export type ServiceName = "postgres" | "rgw";

const SERVICES: Record<ServiceName, { suites: string; install: string }> = {
  postgres: {
    suites: "PostgreSQL suites",
    install: "install postgresql (apt-get install postgresql)",
  },
  rgw: {
    suites: "Ceph RGW (S3) suites",
    install: "install Ceph RGW (apt-get install radosgw ceph-mon ceph-osd ceph-common)",
  },
};

/** True when env CKPT_REQUIRE_SERVICES=1: missing services fail instead of skipping. */
export function servicesRequired(): boolean {
  return process.env.CKPT_REQUIRE_SERVICES === "1";
}

const warned = new Set<ServiceName>();

/**
 * Returns true when the service is available (run the test). Otherwise throws when
 * CKPT_REQUIRE_SERVICES=1, else prints a loud warning (once per service per process), marks
 * `t` skipped if given, and returns false (the caller returns / skips).
 */
export function requireOrSkip(name: ServiceName, available: boolean, t?: { skip(message?: string): void }): boolean {
  if (available) return true;
  const { suites, install } = SERVICES[name];
  const message = `${suites} — ${install} to run them`;
  if (servicesRequired()) {
    throw new Error(`CKPT_REQUIRE_SERVICES=1 but ${name} is not available: ${message}`);
  }
  if (!warned.has(name)) {
    warned.add(name);
    const bar = "!".repeat(78);
    process.stderr.write(`\n${bar}\n!!! SKIPPED: ${message}\n${bar}\n\n`);
  }
  t?.skip(`SKIPPED: ${message}`);
  return false;
}
