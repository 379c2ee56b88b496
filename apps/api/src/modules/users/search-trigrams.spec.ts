import { sampleIsStale } from './search-trigram-stats.service';
import { indexedPart, likeTrigrams, TrigramSample } from './search-trigrams';

/** A sample of `rows` rows where each listed trigram is held by that many rows (the others by none). */
const sampleOf = (rows: number, counts: Record<string, number>): TrigramSample => ({ rows, counts: new Map(Object.entries(counts)) });

describe('search trigrams (which part of a word the trigram index looks up)', () => {
  it("extracts the trigrams pg_trgm takes from LIKE '%word%' (no padding at the wildcards)", () => {
    // show_trgm('bench421339@') is {"  b"," be",133,213,339,"39 ",421,ben,ch4,enc,h42,nch}: LIKE's
    // leading wildcard drops the two front-padded ones.
    expect(likeTrigrams('bench421339@').sort()).toEqual(['133', '213', '339', '39 ', '421', 'ben', 'ch4', 'enc', 'h42', 'nch']);
    expect(likeTrigrams('John@Gmail.com').sort()).toEqual(['  c', '  g', ' co', ' gm', 'ail', 'com', 'gma', 'hn ', 'il ', 'joh', 'mai', 'ohn']);
    expect(likeTrigrams('ab')).toEqual([]);
    expect(likeTrigrams('a@b')).toEqual(['  b']);
  });

  it('looks up the whole word without a sample, with too small a sample, or for a word that is not printable ASCII', () => {
    const everyoneBench = sampleOf(10_000, { ben: 10_000, enc: 10_000, nch: 10_000 });
    expect(indexedPart('bench421339@', undefined)).toBe('bench421339@');
    expect(indexedPart('bench421339@', sampleOf(100, { ben: 100, enc: 100, nch: 100 }))).toBe('bench421339@');
    expect(indexedPart('bench421339@', everyoneBench)).not.toBe('bench421339@');
    expect(indexedPart('bénch421339@', everyoneBench)).toBe('bénch421339@');
    expect(indexedPart('ΣΙΣΥΦΟΣ421339', everyoneBench)).toBe('ΣΙΣΥΦΟΣ421339');
  });

  it('leaves out trigrams every user holds when the rest of the word is rare', () => {
    const sample = sampleOf(20_000, { ben: 20_000, enc: 20_000, nch: 20_000, ch4: 2_000, h42: 200, '421': 120, '213': 120, '133': 120, '339': 120, '39 ': 200 });
    const part = indexedPart('bench421339@', sample);
    expect('bench421339@').toContain(part);
    expect(part.length).toBeGreaterThanOrEqual(3);
    for (const common of ['ben', 'enc', 'nch']) expect(likeTrigrams(part)).not.toContain(common);
  });

  it('keeps the whole word when no part is clearly cheaper', () => {
    // Every trigram of "james" is about as common as the others: no part narrows the search more cheaply.
    const sample = sampleOf(20_000, { jam: 2_000, ame: 2_400, mes: 2_200 });
    expect(indexedPart('james', sample)).toBe('james');
    // A word whose common part is what makes it selective keeps that part too.
    expect(indexedPart('smith', sampleOf(20_000, { smi: 300, mit: 400, ith: 500 }))).toBe('smith');
  });

  it('always answers the word or a part of it of at least three characters', () => {
    const alphabet = 'abe1@._- x';
    let seed = 7;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 200; i++) {
      const t = Array.from({ length: 3 }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      counts[t] = Math.floor(random() * 5_000);
    }
    const sample = sampleOf(5_000, counts);
    for (let i = 0; i < 500; i++) {
      const word = Array.from({ length: 1 + Math.floor(random() * 30) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      const part = indexedPart(word, sample);
      expect(word.includes(part) && (part === word || part.length >= 3)).toBe(true);
    }
  });
});

describe('when the trigram sample is stale (SearchTrigramStats)', () => {
  it('at once after a change of over half the sampled rows; after 30 s after a change of over a fiftieth; never for 1,000 rows or fewer', () => {
    expect(sampleIsStale(0, 1_000, 0)).toBe(false);
    expect(sampleIsStale(0, 1_001, 0)).toBe(true);
    expect(sampleIsStale(600_000, 1_000_000, 0)).toBe(true);
    expect(sampleIsStale(1_000_000, 400_000, 0)).toBe(true);
    // An import that ends between two half-steps: the last sample saw 80 % of the table.
    expect(sampleIsStale(800_000, 1_000_000, 29_999)).toBe(false);
    expect(sampleIsStale(800_000, 1_000_000, 30_000)).toBe(true);
    expect(sampleIsStale(1_000_000, 1_020_001, 30_000)).toBe(true);
    expect(sampleIsStale(1_000_000, 1_019_000, 600_000)).toBe(false);
    expect(sampleIsStale(10_000, 10_900, 600_000)).toBe(false);
  });
});
