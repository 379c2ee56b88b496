/**
 * `value` as JSON with every object's keys sorted (recursively; arrays keep their order), so that
 * bodies that parse to the same value give the same text whatever their key order or whitespace.
 * For a value whose keys are already sorted it is exactly JSON.stringify(value). Iterative: a deeply
 * nested body (the depth limit is checked later, by validation) cannot overflow the stack.
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  // Work items: a value to write, or text to write as it is.
  const stack: Array<{ value: unknown } | { text: string }> = [{ value }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if ('text' in item) {
      out.push(item.text);
      continue;
    }
    const v = item.value;
    if (Array.isArray(v)) {
      const parts: Array<{ value: unknown } | { text: string }> = [{ text: '[' }];
      v.forEach((element: unknown, i) => {
        if (i > 0) parts.push({ text: ',' });
        // As JSON.stringify: undefined, functions and symbols in an array are null.
        parts.push(element === undefined || typeof element === 'function' || typeof element === 'symbol' ? { text: 'null' } : { value: element });
      });
      parts.push({ text: ']' });
      for (let i = parts.length - 1; i >= 0; i--) stack.push(parts[i]!);
    } else if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON !== 'function') {
      const entries = Object.entries(v)
        .filter(([, field]) => field !== undefined && typeof field !== 'function' && typeof field !== 'symbol')
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const parts: Array<{ value: unknown } | { text: string }> = [{ text: '{' }];
      entries.forEach(([key, field], i) => {
        parts.push({ text: `${i > 0 ? ',' : ''}${JSON.stringify(key)}:` }, { value: field });
      });
      parts.push({ text: '}' });
      for (let i = parts.length - 1; i >= 0; i--) stack.push(parts[i]!);
    } else {
      // Scalars (and objects with toJSON, such as dates) as JSON.stringify writes them.
      out.push(JSON.stringify(v) ?? 'null');
    }
  }
  return out.join('');
}
