/**
 * First-match route selection that stays fast with thousands of routes. Routes whose only condition is a path
 * prefix or an exact path (what control planes generate by the thousand) are indexed in runs: a character trie
 * for prefixes and a map for exact paths, each node remembering the lowest route index ending there. A lookup walks
 * the path once and takes the lowest index found, which is exactly the route a linear first-match scan would have
 * picked within the run. Routes with other conditions are tried one by one, in order, between the runs.
 */
import type { MatchContext, RouteEntry } from './route-table.js';

/** Shorter runs of path-only routes are scanned: a handful of `startsWith` beats a trie walk. */
const MIN_INDEXED_RUN = 16;

interface TrieNode {
  children: Map<number, TrieNode> | undefined;
  /** Lowest index (within the run) of a prefix route whose prefix ends at this node; -1 for none. */
  route: number;
}

function newNode(): TrieNode {
  return { children: undefined, route: -1 };
}

/** A run of consecutive path-only routes, indexed. */
class IndexedRun {
  private readonly sensitive = newNode();
  private readonly insensitive = newNode();
  private hasInsensitive = false;
  private readonly exact = new Map<string, number>();
  private readonly exactInsensitive = new Map<string, number>();

  constructor(readonly routes: readonly RouteEntry[]) {
    routes.forEach((route, i) => {
      if (route.isExactPath) {
        const map = route.caseSensitive ? this.exact : this.exactInsensitive;
        if (!map.has(route.pathValue)) map.set(route.pathValue, i);
        return;
      }
      if (!route.caseSensitive) this.hasInsensitive = true;
      let node = route.caseSensitive ? this.sensitive : this.insensitive;
      for (let c = 0; c < route.pathValue.length; c++) {
        const code = route.pathValue.charCodeAt(c);
        node.children ??= new Map();
        let next = node.children.get(code);
        if (next === undefined) node.children.set(code, (next = newNode()));
        node = next;
      }
      if (node.route < 0) node.route = i;
    });
  }

  match(path: string): RouteEntry | undefined {
    let best = walk(this.sensitive, path, false);
    const exact = this.exact.get(path);
    if (exact !== undefined && (best < 0 || exact < best)) best = exact;
    if (this.hasInsensitive) {
      const folded = walk(this.insensitive, path, true);
      if (folded >= 0 && (best < 0 || folded < best)) best = folded;
    }
    if (this.exactInsensitive.size > 0) {
      const folded = this.exactInsensitive.get(path.toLowerCase());
      if (folded !== undefined && (best < 0 || folded < best)) best = folded;
    }
    return best < 0 ? undefined : this.routes[best];
  }
}

/** Lowest route index among the prefixes of `path` in the trie. */
function walk(root: TrieNode, path: string, fold: boolean): number {
  let best = root.route;
  let node: TrieNode | undefined = root;
  for (let c = 0; c < path.length; c++) {
    let code = path.charCodeAt(c);
    if (fold && code >= 65 && code <= 90) code += 32;
    node = node.children?.get(code);
    if (node === undefined) break;
    if (node.route >= 0 && (best < 0 || node.route < best)) best = node.route;
  }
  return best;
}

type Segment = RouteEntry | IndexedRun;

export class RouteMatcher {
  private readonly segments: Segment[] = [];

  constructor(routes: readonly RouteEntry[]) {
    let run: RouteEntry[] = [];
    const flush = () => {
      if (run.length >= MIN_INDEXED_RUN) this.segments.push(new IndexedRun(run));
      else this.segments.push(...run);
      run = [];
    };
    for (const route of routes) {
      if (route.indexable) run.push(route);
      else {
        flush();
        this.segments.push(route);
      }
    }
    flush();
  }

  /** The first route matching the request, as Envoy's first-match semantics define it. */
  match(ctx: MatchContext): RouteEntry | undefined {
    const segments = this.segments;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      if (segment instanceof IndexedRun) {
        const route = segment.match(ctx.pathOnly);
        if (route !== undefined) return route;
      } else if (segment.matches(ctx)) {
        return segment;
      }
    }
    return undefined;
  }
}
