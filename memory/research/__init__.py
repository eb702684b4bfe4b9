"""BABS's web research: a pluggable search provider (a SearxNG instance, or any search URL answering
JSON), guarded page fetching, and the pages' main text chunked into memory with URL and fetch time."""
