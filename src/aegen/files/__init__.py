"""Safe single-file reading and writing: atomic writes, bounded reads, safetensors, the cache."""
