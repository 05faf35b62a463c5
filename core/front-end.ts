/**
 * A protocol front-end (UPnP IGD today; NAT-PMP/PCP later). Every front-end changes mappings only
 * through the MappingService, so all of them share the same lifecycle and `beforeMap` policies.
 */
export interface FrontEnd {
  readonly name: string;
  start(): Promise<void>;
  /** Stops answering; must be safe to call after a failed or partial start. */
  stop(): Promise<void>;
  /** Where a developer can point a client, printed at start (e.g. the description URL). */
  describe?(): string[];
  /** What the operations status shows of this front-end (e.g. the external address it reports). */
  status?(): Readonly<Record<string, unknown>>;
}
