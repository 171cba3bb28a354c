/**
 * The regex dialect of spec/bucketing.md §4.2 — RE2 syntax, restricted — run by a Pike VM, so
 * matching is linear in the value's length whatever the pattern (JavaScript's RegExp backtracks).
 * Classes are ASCII (`\d` `\w` `\s` `\b`), `.` is anything but `\n`, `$` only the very end,
 * and the value is read by code points.
 */

export const MAX_PATTERN_CHARS = 256;
export const MAX_REPEAT = 100;
export const MAX_VALUE_CHARS = 1024;

/** A pattern the dialect refuses; the message says why. */
export class PatternError extends Error {
  override name = "PatternError";
}

type CharTest = (c: number) => boolean;

type Node =
  | { t: "char"; test: CharTest }
  | { t: "empty" }
  | { t: "assert"; kind: "begin" | "end" | "word" | "notword" }
  | { t: "cat"; items: Node[] }
  | { t: "alt"; items: Node[] }
  | { t: "group"; body: Node }
  | { t: "repeat"; body: Node; min: number; max: number };

const isDigit: CharTest = (c) => c >= 48 && c <= 57;
const isWord: CharTest = (c) =>
  (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isSpace: CharTest = (c) => c === 9 || c === 10 || c === 12 || c === 13 || c === 32;

const POSIX: Record<string, CharTest> = {
  alnum: (c) => isWord(c) && c !== 95,
  alpha: (c) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122),
  ascii: (c) => c <= 0x7f,
  blank: (c) => c === 9 || c === 32,
  cntrl: (c) => c <= 0x1f || c === 0x7f,
  digit: isDigit,
  graph: (c) => c >= 0x21 && c <= 0x7e,
  lower: (c) => c >= 97 && c <= 122,
  print: (c) => c >= 0x20 && c <= 0x7e,
  punct: (c) => (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e),
  space: (c) => isSpace(c) || c === 11,
  upper: (c) => c >= 65 && c <= 90,
  word: isWord,
  xdigit: (c) => isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102),
};

const SIMPLE_ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, a: 7 };

function perlClass(letter: string): CharTest | undefined {
  switch (letter) {
    case "d": return isDigit;
    case "D": return (c) => !isDigit(c);
    case "w": return isWord;
    case "W": return (c) => !isWord(c);
    case "s": return isSpace;
    case "S": return (c) => !isSpace(c);
    default: return undefined;
  }
}

/** Both cases of a code point (simple case mapping), for `(?i)`. */
function caseVariants(c: number): number[] {
  const s = String.fromCodePoint(c);
  const out = new Set<number>([c]);
  for (const v of [s.toLowerCase(), s.toUpperCase()]) {
    const cp = v.codePointAt(0);
    if (cp !== undefined && String.fromCodePoint(cp) === v) out.add(cp);
  }
  return [...out];
}

class Parser {
  private i = 0;
  private readonly cps: number[];
  foldCase = false;

  constructor(pattern: string) {
    this.cps = Array.from(pattern, (ch) => ch.codePointAt(0) as number);
  }

  private peek(offset = 0): number | undefined {
    return this.cps[this.i + offset];
  }

  private ch(offset = 0): string {
    const c = this.peek(offset);
    return c === undefined ? "" : String.fromCodePoint(c);
  }

  private fail(why: string): never {
    throw new PatternError(`${why} (at character ${this.i})`);
  }

  parse(): Node {
    if (this.cps.length > MAX_PATTERN_CHARS) {
      throw new PatternError(`pattern has ${this.cps.length} characters; at most ${MAX_PATTERN_CHARS}`);
    }
    if (this.ch() === "(" && this.ch(1) === "?" && this.ch(2) === "i" && this.ch(3) === ")") {
      this.foldCase = true;
      this.i = 4;
    }
    const node = this.alternation();
    if (this.i < this.cps.length) this.fail("unmatched ')'");
    return node;
  }

  private alternation(): Node {
    const items = [this.concatenation()];
    while (this.ch() === "|") {
      this.i++;
      items.push(this.concatenation());
    }
    return items.length === 1 ? (items[0] as Node) : { t: "alt", items };
  }

  private concatenation(): Node {
    const items: Node[] = [];
    while (this.i < this.cps.length && this.ch() !== "|" && this.ch() !== ")") {
      const atom = this.atom();
      items.push(this.quantified(atom));
    }
    if (items.length === 0) return { t: "empty" };
    return items.length === 1 ? (items[0] as Node) : { t: "cat", items };
  }

  /** `{n}`, `{n,}`, `{n,m}` at the cursor, or undefined (then `{` is a literal, as in RE2). */
  private counted(): { min: number; max: number; length: number } | undefined {
    let j = this.i + 1;
    const num = (): string => {
      let s = "";
      while (j < this.cps.length && isDigit(this.cps[j] as number)) s += String.fromCodePoint(this.cps[j++] as number);
      return s;
    };
    const lo = num();
    if (lo === "") return undefined;
    let hi: string | undefined = lo;
    if (this.cps[j] === 44 /* , */) {
      j++;
      hi = num();
      if (hi === "") hi = undefined;
    }
    if (this.cps[j] !== 125 /* } */) return undefined;
    const min = Number(lo);
    const max = hi === undefined ? Infinity : Number(hi);
    return { min, max, length: j + 1 - this.i };
  }

  private quantified(atom: Node): Node {
    let node = atom;
    let quantifiers = 0;
    for (;;) {
      const c = this.ch();
      let min: number;
      let max: number;
      if (c === "*") [min, max] = [0, Infinity];
      else if (c === "+") [min, max] = [1, Infinity];
      else if (c === "?") [min, max] = [0, 1];
      else if (c === "{") {
        const rep = this.counted();
        if (rep === undefined) return node;
        if (rep.min > MAX_REPEAT || (rep.max !== Infinity && rep.max > MAX_REPEAT)) {
          this.fail(`repeat count above ${MAX_REPEAT}`);
        }
        if (rep.max < rep.min) this.fail("bad repeat range");
        min = rep.min;
        max = rep.max;
        this.i += rep.length - 1;
      } else return node;
      this.i++;
      if (quantifiers > 0) this.fail("bad repetition operator (possessive or doubled quantifier)");
      if (node.t === "empty" || node.t === "assert") this.fail("missing argument to repetition operator");
      if (this.ch() === "?") this.i++; // lazy: the same language, so the same match/no-match answer
      if (node.t === "group" && max > 1 && containsQuantifier(node.body)) {
        this.fail("nested quantifier: a repeated group must not contain a quantifier");
      }
      node = { t: "repeat", body: node, min, max };
      quantifiers++;
    }
  }

  private atom(): Node {
    const c = this.ch();
    switch (c) {
      case "(":
        return this.group();
      case "[":
        return this.charClass();
      case ".":
        this.i++;
        return { t: "char", test: (x) => x !== 10 };
      case "^":
        this.i++;
        return { t: "assert", kind: "begin" };
      case "$":
        this.i++;
        return { t: "assert", kind: "end" };
      case "\\":
        return this.escape();
      case "*":
      case "+":
      case "?":
        return this.fail("missing argument to repetition operator");
      default: {
        const cp = this.peek() as number;
        this.i++;
        return this.literal(cp);
      }
    }
  }

  private literal(cp: number): Node {
    if (!this.foldCase) return { t: "char", test: (x) => x === cp };
    const variants = caseVariants(cp);
    return { t: "char", test: (x) => variants.includes(x) };
  }

  private group(): Node {
    this.i++; // (
    if (this.ch() === "?") {
      if (this.ch(1) === ":") {
        this.i += 2;
      } else if (this.ch(1) === "P" && this.ch(2) === "<") {
        this.i += 3;
        this.groupName();
      } else if (this.ch(1) === "<" && this.ch(2) !== "=" && this.ch(2) !== "!") {
        this.fail("(?<name>…) is not supported; write (?P<name>…) or (?:…)");
      } else if (this.ch(1) === "=" || this.ch(1) === "!" || this.ch(1) === "<") {
        this.fail("lookaround is not supported (use a second clause with negate)");
      } else if (this.ch(1) === "P" && this.ch(2) === "=") {
        this.fail("backreferences are not supported");
      } else {
        this.fail("only (?i) at the very start of the pattern is supported");
      }
    }
    const body = this.alternation();
    if (this.ch() !== ")") this.fail("missing ')'");
    this.i++;
    return { t: "group", body };
  }

  private groupName(): void {
    let n = 0;
    while (this.i < this.cps.length && isWord(this.peek() as number)) {
      this.i++;
      n++;
    }
    if (n === 0 || this.ch() !== ">") this.fail("bad group name");
    this.i++;
  }

  /** An escape outside a class. */
  private escape(): Node {
    this.i++; // backslash
    const c = this.ch();
    if (c === "") this.fail("trailing backslash");
    const perl = perlClass(c);
    if (perl !== undefined) {
      this.i++;
      return { t: "char", test: perl };
    }
    switch (c) {
      case "b":
        this.i++;
        return { t: "assert", kind: "word" };
      case "B":
        this.i++;
        return { t: "assert", kind: "notword" };
      case "A":
        this.i++;
        return { t: "assert", kind: "begin" };
      case "z":
        return this.fail("\\z is not supported; $ already matches only at the very end");
      case "Q":
        return this.fail("\\Q…\\E is not supported; escape each character");
      default:
        return this.literal(this.escapedChar());
    }
  }

  /** The code point of a single-character escape at the cursor (after the backslash). */
  private escapedChar(): number {
    const c = this.ch();
    const cp = this.peek() as number;
    if (c in SIMPLE_ESCAPES) {
      this.i++;
      return SIMPLE_ESCAPES[c] as number;
    }
    if (c === "x") {
      this.i++;
      let hex = "";
      if (this.ch() === "{") this.fail("\\x{…} is not supported; write \\xHH or the character itself");
      hex = this.ch() + this.ch(1);
      this.i += 2;
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) this.fail("bad \\x escape");
      return Number.parseInt(hex, 16);
    }
    if (c >= "1" && c <= "9") this.fail("backreferences are not supported");
    if (c === "0") {
      let oct = "";
      while (oct.length < 3 && this.ch() >= "0" && this.ch() <= "7") oct += this.ch(), this.i++;
      return Number.parseInt(oct, 8);
    }
    if (cp < 0x80 && (!isWord(cp) || cp === 95)) {
      this.i++;
      return cp; // escaped punctuation (and _) is itself
    }
    return this.fail(`unsupported escape \\${c}`);
  }

  private charClass(): Node {
    this.i++; // [
    let negated = false;
    if (this.ch() === "^") {
      negated = true;
      this.i++;
    }
    const tests: CharTest[] = [];
    let first = true;
    while (this.i < this.cps.length && (this.ch() !== "]" || first)) {
      first = false;
      if (this.ch() === "[" && this.ch(1) === ":") {
        const end = this.cps.indexOf(58 /* : */, this.i + 2);
        if (end > 0 && this.cps[end + 1] === 93 /* ] */) {
          let name = String.fromCodePoint(...this.cps.slice(this.i + 2, end));
          const not = name.startsWith("^");
          if (not) name = name.slice(1);
          const test = POSIX[name];
          if (test === undefined) this.fail(`unknown class [:${name}:]`);
          tests.push(not ? (x) => !test(x) : test);
          this.i = end + 2;
          continue;
        }
      }
      if (this.ch() === "\\") {
        const perl = perlClass(this.ch(1));
        if (perl !== undefined) {
          tests.push(perl);
          this.i += 2;
          if (this.ch() === "-" && this.ch(1) !== "]") this.fail("a class escape cannot end a range; write \\- for a literal -");
          continue;
        }
      }
      const lo = this.classChar();
      if (this.ch() === "-" && this.ch(1) !== "]" && this.ch(1) !== "") {
        this.i++;
        const hi = this.classChar();
        if (hi < lo) this.fail("bad character class range");
        tests.push(this.foldCase ? (x) => caseVariants(x).some((v) => v >= lo && v <= hi) : (x) => x >= lo && x <= hi);
      } else {
        const variants = this.foldCase ? caseVariants(lo) : [lo];
        tests.push((x) => variants.includes(x));
      }
    }
    if (this.ch() !== "]") this.fail("missing ']'");
    this.i++;
    const any: CharTest = (x) => tests.some((t) => t(x));
    return { t: "char", test: negated ? (x) => !any(x) : any };
  }

  private classChar(): number {
    if (this.ch() === "\\") {
      this.i++;
      if (this.ch() === "b" || this.ch() === "B" || this.ch() === "A" || this.ch() === "z" || this.ch() === "Q") {
        this.fail(`\\${this.ch()} is not allowed in a class`);
      }
      return this.escapedChar();
    }
    const cp = this.peek() as number;
    this.i++;
    return cp;
  }
}

function containsQuantifier(node: Node): boolean {
  switch (node.t) {
    case "repeat":
      return true;
    case "cat":
    case "alt":
      return node.items.some(containsQuantifier);
    case "group":
      return containsQuantifier(node.body);
    default:
      return false;
  }
}

// -- compilation to a Pike VM program ---------------------------------------------------

type Inst =
  | { op: "char"; test: CharTest }
  | { op: "split"; x: number; y: number }
  | { op: "jmp"; x: number }
  | { op: "assert"; kind: "begin" | "end" | "word" | "notword" }
  | { op: "match" };

function emit(node: Node, prog: Inst[]): void {
  switch (node.t) {
    case "char":
      prog.push({ op: "char", test: node.test });
      return;
    case "empty":
      return;
    case "assert":
      prog.push({ op: "assert", kind: node.kind });
      return;
    case "cat":
      for (const item of node.items) emit(item, prog);
      return;
    case "group":
      emit(node.body, prog);
      return;
    case "alt": {
      const jumps: Inst[] = [];
      node.items.forEach((item, k) => {
        if (k < node.items.length - 1) {
          const split: Inst = { op: "split", x: prog.length + 1, y: -1 };
          prog.push(split);
          emit(item, prog);
          const jmp: Inst = { op: "jmp", x: -1 };
          prog.push(jmp);
          jumps.push(jmp);
          (split as { y: number }).y = prog.length;
        } else {
          emit(item, prog);
        }
      });
      for (const j of jumps) (j as { x: number }).x = prog.length;
      return;
    }
    case "repeat": {
      for (let k = 0; k < node.min; k++) emit(node.body, prog);
      if (node.max === Infinity) {
        const split: Inst = { op: "split", x: prog.length + 1, y: -1 };
        const at = prog.length;
        prog.push(split);
        emit(node.body, prog);
        prog.push({ op: "jmp", x: at });
        (split as { y: number }).y = prog.length;
      } else {
        const splits: Inst[] = [];
        for (let k = node.min; k < node.max; k++) {
          const split: Inst = { op: "split", x: prog.length + 1, y: -1 };
          prog.push(split);
          splits.push(split);
          emit(node.body, prog);
        }
        for (const s of splits) (s as { y: number }).y = prog.length;
      }
      return;
    }
  }
}

/** A compiled pattern of the dialect: `test(value)` searches (unanchored) in linear time. */
export class Pattern {
  private readonly prog: Inst[];
  private readonly marks: Int32Array;
  private generation = 0;
  // Work buffers, reused by every call (test() is synchronous: no call can interleave): the two
  // thread lists hold each pc at most once per step, the stack at most one push per edge.
  private current: Int32Array;
  private next: Int32Array;
  private readonly stack: Int32Array;
  private cps = new Int32Array(64);

  constructor(readonly source: string) {
    const parser = new Parser(source);
    const ast = parser.parse();
    const prog: Inst[] = [];
    emit(ast, prog);
    prog.push({ op: "match" });
    this.prog = prog;
    this.marks = new Int32Array(prog.length).fill(-1);
    this.current = new Int32Array(prog.length);
    this.next = new Int32Array(prog.length);
    this.stack = new Int32Array(2 * prog.length + 2);
  }

  /** True when the pattern matches somewhere in `value` (code points; ASCII classes). */
  test(value: string): boolean {
    if (this.cps.length < value.length) this.cps = new Int32Array(value.length);
    const cps = this.cps;
    let n = 0;
    for (const ch of value) cps[n++] = ch.codePointAt(0) as number;
    let size = 0;
    for (let pos = 0; pos <= n; pos++) {
      const gen = ++this.generation;
      // threads carried from the previous step (in `current`, `size` of them) move to `next`
      // through their empty moves, then a new thread starting here (unanchored)
      const list = this.current;
      const out = this.next;
      let count = 0;
      for (let i = 0; i < size; i++) {
        const added = this.add(list[i] as number, pos, cps, n, out, count, gen);
        if (added < 0) return true;
        count = added;
      }
      const started = this.add(0, pos, cps, n, out, count, gen);
      if (started < 0) return true;
      count = started;
      if (pos === n) break;
      const c = cps[pos] as number;
      size = 0;
      for (let i = 0; i < count; i++) {
        const pc = out[i] as number;
        const inst = this.prog[pc] as Inst;
        if (inst.op === "char" && inst.test(c)) list[size++] = pc + 1;
      }
    }
    return false;
  }

  /** Follow empty moves from `pc` at `pos`, appending char instructions to `out` from `count`;
   * the new count, or -1 when a match is reached. */
  private add(pc: number, pos: number, cps: Int32Array, n: number, out: Int32Array, count: number, gen: number): number {
    const stack = this.stack;
    let top = 0;
    stack[top++] = pc;
    while (top > 0) {
      const at = stack[--top] as number;
      if (this.marks[at] === gen) continue;
      this.marks[at] = gen;
      const inst = this.prog[at] as Inst;
      switch (inst.op) {
        case "match":
          return -1;
        case "char":
          out[count++] = at;
          break;
        case "jmp":
          stack[top++] = inst.x;
          break;
        case "split":
          stack[top++] = inst.y;
          stack[top++] = inst.x;
          break;
        case "assert":
          if (assertHolds(inst.kind, pos, cps, n)) stack[top++] = at + 1;
          break;
      }
    }
    return count;
  }
}

function assertHolds(kind: "begin" | "end" | "word" | "notword", pos: number, cps: Int32Array, n: number): boolean {
  switch (kind) {
    case "begin":
      return pos === 0;
    case "end":
      return pos === n;
    default: {
      const before = pos > 0 && isWord(cps[pos - 1] as number);
      const after = pos < n && isWord(cps[pos] as number);
      return (before !== after) === (kind === "word");
    }
  }
}
