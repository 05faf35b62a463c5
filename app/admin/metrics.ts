import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Daemon } from '../../core/daemon.js';

/** Every metric name, so that the compiler keeps the list and the README's table in step. */
export const METRIC_NAMES = [
  'upnpd_info',
  'upnpd_uptime_seconds',
  'upnpd_mappings',
  'upnpd_pinholes',
  'upnpd_requests_total',
  'upnpd_limit_refusals_total',
  'upnpd_backend_apply_seconds',
  'upnpd_gena_subscriptions',
  'upnpd_state_write_errors_total',
  'upnpd_persistence_ok',
  'upnpd_refusals_total',
  'upnpd_ssdp_queries_total',
  'upnpd_reconcile_checks_total',
  'upnpd_reconcile_repairs_total',
  'upnpd_reconcile_failures_total',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

/** Backend apply latency buckets (s): one nft transaction takes ms; thousands of elements, a second. */
const APPLY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/**
 * The firewall apply latency, observed from the daemon's first apply on (the restore at start
 * included): made before the daemon starts, registered when the admin listener does.
 */
export class ApplyTimes extends Histogram<'outcome'> {
  constructor() {
    super({
      name: 'upnpd_backend_apply_seconds',
      help: 'How long the firewall backend took to apply a change set, by outcome',
      labelNames: ['outcome'],
      buckets: APPLY_BUCKETS,
      registers: [],
    });
  }

  /** What the daemon calls after each apply (DaemonDependencies.onFirewallApply). */
  readonly record = (seconds: number, ok: boolean): void => {
    this.observe({ outcome: ok ? 'applied' : 'failed' }, seconds);
  };
}

/**
 * The daemon's figures in Prometheus' text format (prom-client, a registry of our own). Most are read
 * from the daemon when scraped; the apply latency is observed as it happens.
 */
export function daemonMetrics(daemon: Daemon, applyTimes: ApplyTimes = new ApplyTimes()): Registry {
  const registry = new Registry();
  // One status per scrape, not one per metric (each walks the table): prom-client runs the metrics'
  // collect() one after another in one pass, and the status is dropped when that pass is over.
  let current: ReturnType<Daemon['status']> | undefined;
  const status = () => {
    if (!current) {
      current = daemon.status();
      queueMicrotask(() => (current = undefined));
    }
    return current;
  };
  const upnp = () => status().frontEnds['upnp-igd'] as { requests?: Record<string, number>; subscriptions?: number; ssdpQueries?: number } | undefined;
  const metrics: Record<MetricName, unknown> = {
    upnpd_info: new Gauge({
      name: 'upnpd_info',
      help: 'upnpd version and firewall backend (always 1)',
      labelNames: ['version', 'backend'],
      registers: [registry],
      collect() {
        const s = status();
        this.reset();
        this.set({ version: s.version, backend: s.backend }, 1);
      },
    }),
    upnpd_uptime_seconds: new Gauge({
      name: 'upnpd_uptime_seconds',
      help: 'Seconds since the daemon started',
      registers: [registry],
      collect() {
        this.set(status().uptimeSeconds);
      },
    }),
    upnpd_mappings: new Gauge({
      name: 'upnpd_mappings',
      help: 'Port mappings in the table, by protocol and front-end',
      labelNames: ['protocol', 'source'],
      registers: [registry],
      collect() {
        this.reset();
        for (const m of daemon.mappings.values()) this.inc({ protocol: m.protocol, source: m.createdBy.via });
      },
    }),
    upnpd_pinholes: new Gauge({
      name: 'upnpd_pinholes',
      help: 'IPv6 pinholes in the table, by protocol and front-end',
      labelNames: ['protocol', 'source'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of daemon.mappings.pinholes.values()) this.inc({ protocol: p.protocol, source: p.createdBy.via });
      },
    }),
    upnpd_requests_total: new Counter({
      name: 'upnpd_requests_total',
      help: 'SOAP requests answered, by action and result (ok, a UPnP error code, 503 when rate-limited)',
      labelNames: ['action', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [key, count] of Object.entries(upnp()?.requests ?? {})) {
          const [action = '', result = ''] = key.split(' ');
          this.inc({ action, result }, count);
        }
      },
    }),
    upnpd_limit_refusals_total: new Counter({
      name: 'upnpd_limit_refusals_total',
      help: 'Requests refused by the per-client bounds, by kind',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [kind, count] of Object.entries(daemon.limits.stats().refused)) this.inc({ kind }, count);
      },
    }),
    upnpd_backend_apply_seconds: applyTimes,
    upnpd_gena_subscriptions: new Gauge({
      name: 'upnpd_gena_subscriptions',
      help: 'Live GENA event subscriptions',
      registers: [registry],
      collect() {
        this.set(upnp()?.subscriptions ?? 0);
      },
    }),
    upnpd_state_write_errors_total: new Counter({
      name: 'upnpd_state_write_errors_total',
      help: 'Writes of the state directory (journal, snapshot) that failed',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(daemon.persistence.writeErrors ?? 0);
      },
    }),
    upnpd_persistence_ok: new Gauge({
      name: 'upnpd_persistence_ok',
      help: '1 while acknowledged mappings are kept on disk, 0 while writes fail or there is no state directory',
      registers: [registry],
      collect() {
        this.set(daemon.persistence.state === 'ok' ? 1 : 0);
      },
    }),
    upnpd_refusals_total: new Counter({
      name: 'upnpd_refusals_total',
      help: 'Mapping requests refused by a policy, by policy and rule (an upper bound: a policy may be asked twice for one request)',
      labelNames: ['policy', 'rule'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [policy, byRule] of Object.entries(status().refusals)) for (const [rule, count] of Object.entries(byRule)) this.inc({ policy, rule }, count);
      },
    }),
    upnpd_ssdp_queries_total: new Counter({
      name: 'upnpd_ssdp_queries_total',
      help: 'Valid SSDP M-SEARCH queries received on the LAN',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(upnp()?.ssdpQueries ?? 0);
      },
    }),
    ...reconcileCounters(registry, daemon),
  };
  registry.registerMetric(applyTimes);
  // Typed as a Record so that the compiler keeps METRIC_NAMES and the metrics in step.
  void metrics;
  return registry;
}

/** The reconciler's counters: integrity checks, repairs after a firewall reload, and failures. */
function reconcileCounters(
  registry: Registry,
  daemon: Daemon,
): Record<'upnpd_reconcile_checks_total' | 'upnpd_reconcile_repairs_total' | 'upnpd_reconcile_failures_total', Counter> {
  const counter = (name: string, help: string, read: (s: Daemon['reconcileStats']) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read(daemon.reconcileStats));
      },
    });
  return {
    upnpd_reconcile_checks_total: counter('upnpd_reconcile_checks_total', 'Integrity checks of the firewall rules', (s) => s.checks),
    upnpd_reconcile_repairs_total: counter('upnpd_reconcile_repairs_total', 'Repairs after the firewall lost rules (a reload, a flush)', (s) => s.repairs),
    upnpd_reconcile_failures_total: counter('upnpd_reconcile_failures_total', 'Checks or repairs that failed', (s) => s.failures),
  };
}
