"""BABS's document library: files a person gives the system, parsed, chunked on structure and stored in
memory with where each chunk came from (document, page or heading, character offsets)."""
