/** Suspensions come back as an array (kumomta.md §4: the docs say object); accept both. */
export function suspensionList(json: unknown): unknown[] {
  if (Array.isArray(json)) return json;
  if (json && typeof json === "object") {
    const values = Object.values(json as Record<string, unknown>);
    return values.flatMap((v) => (Array.isArray(v) ? v : [v]));
  }
  return [];
}
