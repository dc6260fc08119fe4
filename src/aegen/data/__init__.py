"""Reading images: the named data sets, a user's folders and arrays, decoding, pixel ranges."""
