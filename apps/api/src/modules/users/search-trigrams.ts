/**
 * Which part of a search word the trigram index should look up.
 *
 * The GIN trigram index (IDX_users_search_trgm) answers `text LIKE '%word%'` by reading the list
 * of rows holding each of the word's trigrams and intersecting them. A trigram that most users
 * share (`com`, `gma`, or `ben` when every email starts with "bench") has a list as long as the
 * table, and PostgreSQL reads the whole list even when the word's rarer trigrams already narrow
 * the search to one user: at a million users `q=bench421339@` read 873 index pages (16 ms) where
 * `h421339@` read 27 (0.5 ms).
 *
 * So the index may look up a part of the word (any row holding the word holds every part of it),
 * and the whole word is then checked on each row the index returned. The part is chosen with
 * trigram frequencies sampled from the users table (SearchTrigramStats); without a sample, or
 * when no part is clearly cheaper, the index looks up the whole word. The choice changes only how
 * fast a search is, never what it finds.
 */

/** Trigram frequencies from a sample of the indexed text: `counts` of rows holding each trigram, in pg_trgm's show_trgm form. */
export interface TrigramSample {
  rows: number;
  counts: ReadonlyMap<string, number>;
}

/** Below this many sampled rows the frequencies say too little: the whole word is looked up. */
export const MIN_SAMPLE_ROWS = 500;
/** Words longer than this (in characters) are looked up whole (the choice tries every part). */
const MAX_WORD_CHARS = 48;
/** Parts longer than this are not tried: by then a part's rarer trigrams have narrowed it to a few rows. */
const MAX_PART_CHARS = 16;
/**
 * Cost model, in "posting-list items read" per row of the table: reading a row from the heap to
 * check the whole word costs about as much as HEAP_ROW_COST items (measured: ~5 ns an item, several
 * microseconds a row); one candidate row of the rarest list makes each other list read at most
 * ITEMS_PER_PAGE items (a page) to skip to it.
 */
const HEAP_ROW_COST = 500;
const ITEMS_PER_PAGE = 1000;
/** A part is used only when the model finds it at least this many times cheaper than the whole word. */
const MIN_GAIN = 2;

const WORD_CHAR = /[\p{L}\p{N}]/u;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Whether a part of `word` may stand for it in the index: only printable ASCII, whose lower case is
 * the same character by character under every collation, so that the lower case of a part is part
 * of the word's lower case (PostgreSQL's lower() of a Greek capital sigma, say, depends on the
 * letter after it).
 */
export function mayCutWord(word: string): boolean {
  return PRINTABLE_ASCII.test(word);
}

/** A word split into characters (code points), lower-cased, with pg_trgm's word-character flags. */
interface Chars {
  lower: string[];
  word: boolean[];
}

function charsOf(text: string): Chars {
  const chars = Array.from(text);
  return { lower: chars.map((c) => c.toLowerCase()), word: chars.map((c) => WORD_CHAR.test(c)) };
}

/** The model's cost of looking up trigrams of these frequencies (see HEAP_ROW_COST), in table-row units. */
function lookupCost(unsorted: number[]): number {
  const freqs = Float64Array.from(unsorted).sort();
  const rarest = freqs[0]!;
  // Rows expected to hold all of them: trigrams of one word overlap and go together, so each
  // further one narrows less: f0 · f1^(1/2) · f2^(1/4) · … = f0 · √(f1 · √(f2 · √…)).
  let nested = 1;
  let listItems = 0;
  for (let k = freqs.length - 1; k >= 0; k--) {
    nested = freqs[k]! * (k === freqs.length - 1 ? 1 : Math.sqrt(nested));
    listItems += Math.min(freqs[k]!, rarest * ITEMS_PER_PAGE);
  }
  return listItems + HEAP_ROW_COST * nested;
}

/**
 * Every trigram a part of the word can have, by position, so that each part's trigrams are found
 * without building strings: `inner[k]` for characters k..k+2 of a run, `frontTwo[s]`, `frontOne[s]`
 * and `alone[s]` for "  c", " cd" and " c " at a run starting at s, `back[e]` for "yz " at a run
 * ending before e. `value` maps each trigram (in pg_trgm's show_trgm form) to what the table holds.
 */
interface Positional<T> {
  inner: T[];
  frontTwo: T[];
  frontOne: T[];
  alone: T[];
  back: T[];
}

function positional<T>({ lower, word }: Chars, value: (trigram: string) => T): Positional<T> {
  const at: Positional<T> = { inner: [], frontTwo: [], frontOne: [], alone: [], back: [] };
  for (let k = 0; k < lower.length; k++) {
    if (k + 2 < lower.length && word[k] && word[k + 1] && word[k + 2]) at.inner[k] = value(lower[k]! + lower[k + 1]! + lower[k + 2]!);
    if (word[k] && (k === 0 || !word[k - 1])) {
      at.frontTwo[k] = value(`  ${lower[k]!}`);
      at.alone[k] = value(` ${lower[k]!} `);
      if (word[k + 1]) at.frontOne[k] = value(` ${lower[k]!}${lower[k + 1]!}`);
    }
    if (k >= 2 && word[k - 1] && word[k - 2] && !word[k]) at.back[k] = value(`${lower[k - 2]!}${lower[k - 1]!} `);
  }
  return at;
}

/**
 * The trigrams pg_trgm extracts from `LIKE '%<characters from..to>%'` (an estimate, for costing
 * only), as entries of a positional table: runs of letters and digits, padded with two blanks in
 * front and one behind where a non-word character (not the wildcard) bounds them.
 */
function partTrigrams<T>(word: boolean[], at: Positional<T>, from: number, to: number): T[] {
  const found: T[] = [];
  let s = from;
  while (s < to) {
    if (!word[s]) {
      s++;
      continue;
    }
    let e = s;
    while (e < to && word[e]) e++;
    const padFront = s > from; // a non-word character of the part precedes the run
    const padBack = e < to; // one follows it
    const length = e - s;
    if (padFront) {
      found.push(at.frontTwo[s]!);
      if (length >= 2) found.push(at.frontOne[s]!);
      else if (padBack) found.push(at.alone[s]!);
    }
    for (let k = s; k + 3 <= e; k++) found.push(at.inner[k]!);
    if (padBack && length >= 2) found.push(at.back[e]!);
    s = e;
  }
  return found;
}

/** pg_trgm's trigrams of `LIKE '%text%'`, each once (an estimate; see partTrigrams). */
export function likeTrigrams(text: string): string[] {
  const chars = charsOf(text);
  return [...new Set(partTrigrams(chars.word, positional(chars, (t) => t), 0, chars.lower.length))];
}

/**
 * The part of `word` the index should look up: the word itself, or a cheaper run of three to
 * MAX_PART_CHARS of its characters. Pure: the same word and sample always give the same part.
 */
export function indexedPart(word: string, sample: TrigramSample | undefined): string {
  if (!sample || sample.rows < MIN_SAMPLE_ROWS || !mayCutWord(word)) return word;
  const chars = charsOf(word);
  const length = chars.lower.length;
  if (length > MAX_WORD_CHARS || length <= 3) return word;
  const unseen = 0.5 / sample.rows;
  const at = positional(chars, (t) => Math.max((sample.counts.get(t) ?? 0) / sample.rows, unseen));
  const whole = partTrigrams(chars.word, at, 0, length);
  if (whole.length === 0) return word;
  let best = { cost: lookupCost(whole) / MIN_GAIN, from: 0, to: length };
  for (let from = 0; from + 3 <= length; from++) {
    for (let to = from + 3; to <= Math.min(length, from + MAX_PART_CHARS); to++) {
      if (from === 0 && to === length) continue;
      const freqs = partTrigrams(chars.word, at, from, to);
      if (freqs.length === 0) continue;
      const cost = lookupCost(freqs);
      if (cost < best.cost) best = { cost, from, to };
    }
  }
  return word.slice(best.from, best.to);
}
