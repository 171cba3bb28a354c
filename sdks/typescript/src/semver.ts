/** SemVer 2.0.0 parsing and precedence (spec/bucketing.md §4.1), after one leading lowercase `v`. */

export interface Version {
  readonly core: readonly [bigint, bigint, bigint];
  /** Pre-release identifiers; empty for a release. Numeric ones are BigInt. */
  readonly pre: readonly (bigint | string)[];
}

// semver.org's own regular expression (a fixed pattern with no nested ambiguity)
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** The version `text` names, or undefined when it does not parse. Build metadata is dropped. */
export function parseVersion(text: string): Version | undefined {
  const m = SEMVER.exec(text.startsWith("v") ? text.slice(1) : text);
  if (m === null) return undefined;
  const pre = m[4] === undefined ? [] : m[4].split(".").map((id) => (/^\d+$/.test(id) ? BigInt(id) : id));
  return { core: [BigInt(m[1] as string), BigInt(m[2] as string), BigInt(m[3] as string)], pre };
}

function cmp<T extends bigint | string>(a: T, b: T): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** SemVer precedence: negative, zero or positive. */
export function compareVersions(a: Version, b: Version): number {
  for (let k = 0; k < 3; k++) {
    const c = cmp(a.core[k] as bigint, b.core[k] as bigint);
    if (c !== 0) return c;
  }
  if (a.pre.length === 0 || b.pre.length === 0) return b.pre.length - a.pre.length; // a release sorts after its pre-releases
  const n = Math.min(a.pre.length, b.pre.length);
  for (let k = 0; k < n; k++) {
    const x = a.pre[k] as bigint | string;
    const y = b.pre[k] as bigint | string;
    if (typeof x !== typeof y) return typeof x === "bigint" ? -1 : 1; // numeric < alphanumeric
    const c = cmp(x, y);
    if (c !== 0) return c;
  }
  return a.pre.length - b.pre.length;
}
