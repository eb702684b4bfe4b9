"""Golden datasets: the examples the curator (memory.curator) keeps from the best runs, browsed, filtered,
included or left out, exported and imported as JSONL; services, selectors, forms and views."""
