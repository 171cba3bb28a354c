/**
 * Local evaluation of an SdkConfig (`GET /sdk/config`), written from spec/bucketing.md §3–4.
 * A config is compiled once into closures; `evaluate` never throws.
 */
import { position, threshold } from "./bucketing.js";
import { Pattern, MAX_VALUE_CHARS } from "./regex.js";
import { compareVersions, parseVersion, type Version } from "./semver.js";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Attributes = Readonly<Record<string, unknown>>;

export type Reason = "rule" | "rollout" | "default" | "off" | "error";
export type ErrorCode = "flag_not_found" | "type_mismatch" | "invalid_flag" | "general";
export type ExpectedType = "boolean" | "string" | "number" | "json";

/** What an evaluation served and why (the OpenFeature evaluation details' shape). */
export interface Evaluation<T = unknown> {
  readonly flagKey: string;
  readonly value: T;
  readonly variation: string | null;
  readonly reason: Reason;
  readonly ruleId: string | null;
  readonly errorCode: ErrorCode | null;
  readonly flagVersion: number | null;
  readonly assignmentUnit: string | null;
}

// -- the wire shapes (SdkConfig) ----------------------------------------------------------

export type Range = readonly [variation: string, start: number, end: number];

export interface RolloutDoc {
  readonly weights?: Readonly<Record<string, number>> | null;
  readonly ranges?: readonly Range[] | null;
}

export interface ClauseDoc {
  readonly attribute?: string;
  readonly op: string;
  readonly values?: readonly unknown[];
  readonly negate?: boolean;
}

export interface RuleDoc {
  readonly id?: string | null;
  readonly clauses?: readonly ClauseDoc[];
  readonly variation?: string | null;
  readonly rollout?: RolloutDoc | null;
}

export interface FlagDoc {
  readonly key: string;
  readonly type?: string;
  readonly assignment_unit: string;
  readonly version: number;
  readonly variations: readonly { readonly key: string; readonly value: unknown }[];
  readonly enabled: boolean;
  readonly salt: string;
  readonly default_variation: string;
  readonly off_variation: string;
  readonly rules?: readonly RuleDoc[];
  readonly rollout?: RolloutDoc | null;
}

export interface SegmentDoc {
  readonly key: string;
  readonly attribute?: string;
  readonly included?: readonly string[];
  readonly excluded?: readonly string[];
  readonly clauses?: readonly ClauseDoc[];
}

export interface SdkConfig {
  readonly environment: string;
  readonly flags: Readonly<Record<string, FlagDoc>>;
  readonly segments?: Readonly<Record<string, SegmentDoc>>;
}

// -- compilation ------------------------------------------------------------------------

/** A flag or segment the evaluator cannot run; the message names the part. */
class BrokenError extends Error {}

/** An attribute read that cannot be answered (attributes neither a mapping nor empty). */
class RuntimeFailure extends Error {}

const MISSING = undefined;
type Match = (unitId: string, attrs: Attributes | null) => boolean;

/** The attributes as a mapping, or null when missing/empty; throws when they are neither. */
function asMapping(attributes: unknown): Attributes | null {
  if (attributes === null || attributes === undefined) return null;
  if (typeof attributes === "object" && !Array.isArray(attributes)) return attributes as Attributes;
  // Python reads `attributes or {}`: a falsy value is empty, anything else is not a mapping
  if (attributes === "" || attributes === 0 || attributes === false || (Array.isArray(attributes) && attributes.length === 0)) {
    return null;
  }
  return INVALID;
}
const INVALID: Attributes = Object.freeze({});

function attributeValue(attribute: string, unitId: string, attrs: Attributes | null): unknown {
  if (attribute === "unit_id") return unitId;
  if (attrs === INVALID) throw new RuntimeFailure(`attributes are not a mapping; cannot read '${attribute}'`);
  if (attrs === null || !Object.hasOwn(attrs, attribute)) return MISSING;
  const v = attrs[attribute];
  return v === null ? MISSING : v;
}

function isScalar(v: unknown): v is string | number | boolean {
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

/** Equality of §4.1: same type only; numbers by value. */
function scalarIn(value: unknown, values: readonly (string | number | boolean)[]): boolean {
  if (!isScalar(value)) return false;
  for (const v of values) if (typeof v === typeof value && v === value) return true;
  return false;
}

const NUMERIC = /^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/;

/** The value as a number for lt/gt, or undefined (booleans, null, unparseable, NaN). */
function asNumber(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isNaN(value) ? undefined : value;
  if (typeof value === "string" && NUMERIC.test(value)) return Number(value);
  return undefined;
}

const NUMERIC_OPS: Record<string, (a: number, b: number) => boolean> = {
  lt: (a, b) => a < b,
  lte: (a, b) => a <= b,
  gt: (a, b) => a > b,
  gte: (a, b) => a >= b,
};

const SEMVER_OPS: Record<string, (c: number) => boolean> = {
  semver_eq: (c) => c === 0,
  semver_lt: (c) => c < 0,
  semver_lte: (c) => c <= 0,
  semver_gt: (c) => c > 0,
  semver_gte: (c) => c >= 0,
};

type SegmentTable = ReadonlyMap<string, Match | BrokenError>;

function compileClause(clause: ClauseDoc, segments: SegmentTable | undefined, where: string): Match {
  const attribute = clause.attribute ?? "unit_id";
  const values = clause.values ?? [];
  const op = clause.op;
  let plain: Match;
  if (op === "equals" || op === "in") {
    const scalars = values.filter(isScalar);
    plain = (u, a) => scalarIn(attributeValue(attribute, u, a), scalars);
  } else if (op === "not_equals" || op === "not_in") {
    const scalars = values.filter(isScalar);
    plain = (u, a) => {
      const v = attributeValue(attribute, u, a);
      return v !== MISSING && !scalarIn(v, scalars);
    };
  } else if (op === "regex") {
    const patterns = values.map((p) => {
      if (typeof p !== "string") throw new BrokenError(`${where}: a regex value must be a string`);
      try {
        return new Pattern(p);
      } catch (exc) {
        throw new BrokenError(`${where}: regex ${JSON.stringify(p)} does not compile: ${(exc as Error).message}`);
      }
    });
    plain = (u, a) => {
      const v = attributeValue(attribute, u, a);
      if (typeof v !== "string" || v.length > MAX_VALUE_CHARS * 2) return false; // UTF-16 bound, exact below
      if (v.length > MAX_VALUE_CHARS && [...v].length > MAX_VALUE_CHARS) return false;
      return patterns.some((p) => p.test(v));
    };
  } else if (op in NUMERIC_OPS) {
    const compare = NUMERIC_OPS[op] as (a: number, b: number) => boolean;
    const bounds = values.map((b) => {
      if (typeof b !== "number" || Number.isNaN(b)) throw new BrokenError(`${where}: ${JSON.stringify(b)} is not a number`);
      return b;
    });
    plain = (u, a) => {
      const n = asNumber(attributeValue(attribute, u, a));
      return n !== undefined && bounds.some((b) => compare(n, b));
    };
  } else if (op in SEMVER_OPS) {
    const holds = SEMVER_OPS[op] as (c: number) => boolean;
    const versions: Version[] = values.map((s) => {
      const v = typeof s === "string" ? parseVersion(s) : undefined;
      if (v === undefined) throw new BrokenError(`${where}: ${JSON.stringify(s)} is not a SemVer version`);
      return v;
    });
    plain = (u, a) => {
      const raw = attributeValue(attribute, u, a);
      const v = typeof raw === "string" ? parseVersion(raw) : undefined;
      return v !== undefined && versions.some((w) => holds(compareVersions(v, w)));
    };
  } else if (op === "in_segment" || op === "not_in_segment") {
    if (segments === undefined) throw new BrokenError(`${where}: a segment clause cannot name segments`);
    const members = values.map((key) => {
      const seg = typeof key === "string" ? segments.get(key) : undefined;
      if (seg === undefined) throw new BrokenError(`${where}: unknown segment ${JSON.stringify(key)}`);
      if (seg instanceof BrokenError) throw new BrokenError(`${where}: segment ${JSON.stringify(key)} is broken: ${seg.message}`);
      return seg;
    });
    const any: Match = (u, a) => members.some((m) => m(u, a));
    plain = op === "in_segment" ? any : (u, a) => !any(u, a);
  } else {
    throw new BrokenError(`${where}: unknown op ${JSON.stringify(op)}`);
  }
  return clause.negate === true ? (u, a) => !plain(u, a) : plain;
}

function compileClauses(clauses: readonly ClauseDoc[], segments: SegmentTable | undefined, where: string): Match {
  const all = clauses.map((c, k) => compileClause(c, segments, `${where}.clauses[${k}]`));
  if (all.length === 0) return () => true;
  if (all.length === 1) return all[0] as Match;
  return (u, a) => {
    for (const m of all) if (!m(u, a)) return false;
    return true;
  };
}

function compileSegment(seg: SegmentDoc): Match {
  const attribute = seg.attribute ?? "unit_id";
  const included = new Set(seg.included ?? []);
  const excluded = new Set(seg.excluded ?? []);
  const clauses = seg.clauses ?? [];
  const byClauses = clauses.length > 0 ? compileClauses(clauses, undefined, `segment ${seg.key}`) : undefined;
  return (u, a) => {
    const k = attributeValue(attribute, u, a);
    if (typeof k === "string") {
      if (excluded.has(k)) return false;
      if (included.has(k)) return true;
    }
    return byClauses !== undefined && byClauses(u, a);
  };
}

/** The initial layout of §3: weights in mapping order, from slot 0, zero weights skipped. */
export function initialLayout(weights: Readonly<Record<string, number>>): Range[] {
  const ranges: Range[] = [];
  let start = 0;
  for (const [variation, w] of Object.entries(weights)) {
    const n = Math.round(w * 1000);
    if (n > 0) {
      ranges.push([variation, start, start + n]);
      start += n;
    }
  }
  return ranges;
}

/** Serves a rollout: ranges sorted by start (a copy), the first whose threshold(end) > position. */
export class Bucketer {
  private readonly ends: bigint[];
  private readonly variations: string[];

  constructor(ranges: readonly Range[]) {
    const sorted = [...ranges].sort((x, y) => x[1] - y[1]);
    this.ends = sorted.map((r) => threshold(r[2]));
    this.variations = sorted.map((r) => r[0]);
  }

  variationAt(pos: bigint): string {
    const ends = this.ends;
    let lo = 0;
    let hi = ends.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((ends[mid] as bigint) > pos) hi = mid;
      else lo = mid + 1;
    }
    return this.variations[lo] as string;
  }
}

function compileRollout(rollout: RolloutDoc, known: ReadonlySet<string>, where: string): Bucketer {
  const ranges = rollout.ranges ?? (rollout.weights ? initialLayout(rollout.weights) : []);
  if (ranges.length === 0) throw new BrokenError(`${where}: no ranges`);
  let total = 0;
  for (const [variation, start, end] of ranges) {
    if (!known.has(variation)) throw new BrokenError(`${where}: unknown variation ${JSON.stringify(variation)}`);
    total += end - start;
  }
  if (total !== 100_000) throw new BrokenError(`${where}: ranges cover ${total} slots, not 100000`);
  return new Bucketer(ranges);
}

type Serve = { readonly variation: string } | { readonly bucketer: Bucketer };

interface CompiledRule {
  readonly id: string | null;
  readonly match: Match;
  readonly serve: Serve;
}

/** One flag, ready to evaluate; `broken` says why it cannot be (then only `off` works). */
export class CompiledFlag {
  readonly values: ReadonlyMap<string, unknown>;
  readonly rules: readonly CompiledRule[] = [];
  readonly rollout: Bucketer | null = null;
  readonly broken: string | null = null;
  /** The salt units are hashed with: the environment's, else the flag key (§4 "Salt"). */
  readonly salt: string;

  constructor(
    readonly doc: FlagDoc,
    segments: SegmentTable,
  ) {
    this.values = new Map(doc.variations.map((v) => [v.key, v.value]));
    const known = new Set(this.values.keys());
    try {
      const variation = (v: string | null | undefined, where: string): string => {
        if (typeof v !== "string" || !known.has(v)) throw new BrokenError(`${where}: unknown variation ${JSON.stringify(v)}`);
        return v;
      };
      variation(doc.default_variation, "default_variation");
      this.rules = (doc.rules ?? []).map((rule, k) => {
        const where = `rules[${k}]`;
        const match = compileClauses(rule.clauses ?? [], segments, where);
        const serve: Serve =
          rule.rollout !== null && rule.rollout !== undefined
            ? { bucketer: compileRollout(rule.rollout, known, `${where}.rollout`) }
            : { variation: variation(rule.variation, `${where}.variation`) };
        return { id: rule.id ?? null, match, serve };
      });
      this.rollout = doc.rollout ? compileRollout(doc.rollout, known, "rollout") : null;
    } catch (exc) {
      if (!(exc instanceof BrokenError)) throw exc;
      this.broken = exc.message;
      this.rules = [];
      this.rollout = null;
    }
    this.salt = doc.salt ? doc.salt : doc.key;
  }
}

/** A config compiled for evaluation: flags by key, segments compiled once and shared. */
export class CompiledConfig {
  readonly environment: string;
  private readonly flags: ReadonlyMap<string, CompiledFlag>;

  constructor(readonly doc: SdkConfig) {
    this.environment = doc.environment;
    const segments = new Map<string, Match | BrokenError>();
    for (const [key, seg] of Object.entries(doc.segments ?? {})) {
      try {
        segments.set(key, compileSegment(seg));
      } catch (exc) {
        if (!(exc instanceof BrokenError)) throw exc;
        segments.set(key, exc); // skipped: as if absent, so the flags naming it are broken
      }
    }
    this.flags = new Map(Object.entries(doc.flags).map(([key, flag]) => [key, new CompiledFlag(flag, segments)]));
  }

  flag(key: string): CompiledFlag | undefined {
    return this.flags.get(key);
  }

  keys(): IterableIterator<string> {
    return this.flags.keys();
  }

  /** Value, variation and reason for one unit (§4). Never throws. */
  evaluate<T = unknown>(flagKey: string, unitId: string, attributes: unknown, defaultValue: T): Evaluation<T> {
    const flag = this.flags.get(flagKey);
    if (flag === undefined) return failure(flagKey, defaultValue, "flag_not_found", null);
    try {
      return evaluateFlag(flagKey, flag, unitId, attributes, defaultValue);
    } catch {
      return failure(flagKey, defaultValue, "general", flag);
    }
  }

  /** `evaluate`, then a value not of `expected` type serves the default (`type_mismatch`). */
  evaluateTyped<T>(flagKey: string, unitId: string, attributes: unknown, defaultValue: T, expected: ExpectedType): Evaluation<T> {
    const result = this.evaluate<T>(flagKey, unitId, attributes, defaultValue);
    if (result.reason === "error" || hasType(result.value, expected)) return result;
    return failure(flagKey, defaultValue, "type_mismatch", this.flags.get(flagKey) ?? null);
  }
}

function hasType(value: unknown, expected: ExpectedType): boolean {
  switch (expected) {
    case "boolean":
      return typeof value === "boolean";
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number";
    case "json":
      return true;
  }
}

function failure<T>(flagKey: string, defaultValue: T, errorCode: ErrorCode, flag: CompiledFlag | null): Evaluation<T> {
  return {
    flagKey,
    value: defaultValue,
    variation: null,
    reason: "error",
    ruleId: null,
    errorCode,
    flagVersion: flag?.doc.version ?? null,
    assignmentUnit: flag?.doc.assignment_unit ?? null,
  };
}

function served<T>(flagKey: string, flag: CompiledFlag, variation: string, reason: Reason, ruleId: string | null): Evaluation<T> {
  return {
    flagKey,
    value: flag.values.get(variation) as T,
    variation,
    reason,
    ruleId,
    errorCode: null,
    flagVersion: flag.doc.version,
    assignmentUnit: flag.doc.assignment_unit,
  };
}

function evaluateFlag<T>(flagKey: string, flag: CompiledFlag, unitId: string, attributes: unknown, defaultValue: T): Evaluation<T> {
  const doc = flag.doc;
  if (!doc.enabled) {
    if (!flag.values.has(doc.off_variation)) return failure(flagKey, defaultValue, "invalid_flag", flag);
    return served(flagKey, flag, doc.off_variation, "off", null);
  }
  if (flag.broken !== null) return failure(flagKey, defaultValue, "invalid_flag", flag);
  const attrs = asMapping(attributes);
  let pos: bigint | undefined;
  for (const rule of flag.rules) {
    if (!rule.match(unitId, attrs)) continue;
    if ("variation" in rule.serve) return served(flagKey, flag, rule.serve.variation, "rule", rule.id);
    pos ??= position(flag.salt, unitId);
    return served(flagKey, flag, rule.serve.bucketer.variationAt(pos), "rule", rule.id);
  }
  if (flag.rollout !== null) {
    pos ??= position(flag.salt, unitId);
    return served(flagKey, flag, flag.rollout.variationAt(pos), "rollout", null);
  }
  return served(flagKey, flag, doc.default_variation, "default", null);
}
