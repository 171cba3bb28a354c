/** Where the repository's spec vectors are, from the compiled test (dist/test/). */
export const VECTORS = new URL("../../../../spec/vectors/", import.meta.url);
