import type { Protocol } from 'upnpd';

// x_tables and iptables-nft evaluate a chain's rules one after another, so a new connection through
// the last of 5000 mappings in one chain walks 5000 rules (and, under legacy, every change rewrites
// that chain). upnpd's chains therefore only dispatch: by protocol and port block to a block chain,
// which dispatches by a narrower port range to a leaf chain holding the mappings' rules. A packet
// walks at most 2 × 16 + 64 dispatch rules and one leaf of at most 64 ports, whatever the table size.
// Shard chains exist only while they hold a mapping.

/** The root chain dispatches by protocol and the port's top 4 bits: 16 blocks of 4096 ports each. */
const BLOCK_SHIFT = 12;
/** A block chain dispatches by the port's next 6 bits: 64 leaves of 64 ports each. */
const LEAF_SHIFT = 6;
const LEAF_ID_DIGITS = 3;

export type ShardProtocol = 'tcp' | 'udp';

/** One shard chain and the destination ports it takes (inclusive). */
export interface Shard {
  readonly chain: string;
  readonly protocol: ShardProtocol;
  readonly from: number;
  readonly to: number;
}

/** Where a port's rule goes: its leaf, and the block chain that dispatches to the leaf. */
export interface Placement {
  readonly block: Shard;
  readonly leaf: Shard;
}

/** A shard chain's name: `<base>.<t|u><hex>`, one hex digit for a block, three for a leaf. */
const SHARD_SUFFIX = /\.([tu])([0-9a-f]|[0-9a-f]{3})$/;

function shard(base: string, protocol: ShardProtocol, port: number, shift: number, digits: number): Shard {
  const id = port >> shift;
  const from = id << shift;
  return { chain: `${base}.${protocol[0]}${id.toString(16).padStart(digits, '0')}`, protocol, from, to: from + (1 << shift) - 1 };
}

/** The block and leaf chains (named after `base`) of a rule matching `protocol` and destination port `port`. */
export function placementOf(base: string, protocol: Protocol | ShardProtocol, port: number): Placement {
  const p = protocol.toLowerCase() as ShardProtocol;
  return { block: shard(base, p, port, BLOCK_SHIFT, 1), leaf: shard(base, p, port, LEAF_SHIFT, LEAF_ID_DIGITS) };
}

/** What a chain named after `base` is: a block chain, a leaf chain (with its placement), or none of upnpd's shards. */
export function shardOfChain(base: string, chain: string): { kind: 'block' | 'leaf'; placement: Placement } | undefined {
  if (!chain.startsWith(`${base}.`)) return undefined;
  const m = SHARD_SUFFIX.exec(chain);
  if (!m || m.index !== base.length) return undefined;
  const protocol: ShardProtocol = m[1] === 't' ? 'tcp' : 'udp';
  const leaf = m[2]!.length === LEAF_ID_DIGITS;
  const port = parseInt(m[2]!, 16) << (leaf ? LEAF_SHIFT : BLOCK_SHIFT);
  return { kind: leaf ? 'leaf' : 'block', placement: placementOf(base, protocol, port) };
}

/** The block chain of a leaf chain's name. */
function blockOfLeaf(leafChain: string): string {
  const m = SHARD_SUFFIX.exec(leafChain);
  return m ? shardOfChain(leafChain.slice(0, m.index), leafChain)!.placement.block.chain : leafChain;
}

/** The shard chains of one table that exist: each leaf with the number of mapping rules it holds, and the block chains. */
export interface TableShards {
  readonly leaves: ReadonlyMap<string, number>;
  readonly blocks: ReadonlySet<string>;
}

export const NO_SHARDS: TableShards = { leaves: new Map(), blocks: new Set() };

/** The shard chains after rules are added to (+1) or removed from (-1) their leaves. */
export interface ShardChanges {
  readonly after: TableShards;
  /** Chains to create, each with the chain that dispatches to it (blocks before their leaves). */
  readonly created: readonly Shard[];
  /** Chains left empty, to delete (leaves before their blocks). */
  readonly emptied: readonly Shard[];
}

/**
 * How `shards` change when the rules of `placements` come and go: a leaf is created for its first
 * rule and deleted with its last, a block with its first and last leaf. Pure.
 */
export function shardChanges(shards: TableShards, removed: readonly Placement[], added: readonly Placement[]): ShardChanges {
  const leaves = new Map(shards.leaves);
  const placements = new Map<string, Placement>();
  for (const [list, delta] of [
    [removed, -1],
    [added, 1],
  ] as const) {
    for (const p of list) {
      placements.set(p.leaf.chain, p);
      leaves.set(p.leaf.chain, (leaves.get(p.leaf.chain) ?? 0) + delta);
    }
  }
  const created: Shard[] = [];
  const emptied: Shard[] = [];
  const blocks = new Set(shards.blocks);
  for (const [chain, p] of placements) {
    const count = leaves.get(chain)!;
    if (count > 0 && !shards.leaves.has(chain)) {
      if (!blocks.has(p.block.chain)) {
        blocks.add(p.block.chain);
        created.push(p.block);
      }
      created.push(p.leaf);
    } else if (count <= 0) {
      leaves.delete(chain);
      if (shards.leaves.has(chain)) emptied.push(p.leaf);
    }
  }
  const usedBlocks = new Set([...leaves.keys()].map((chain) => placements.get(chain)?.block.chain ?? blockOfLeaf(chain)));
  for (const leaf of [...emptied]) {
    const block = placements.get(leaf.chain)!.block;
    if (blocks.has(block.chain) && !usedBlocks.has(block.chain)) {
      blocks.delete(block.chain);
      emptied.push(block);
    }
  }
  return { after: { leaves, blocks }, created, emptied };
}
