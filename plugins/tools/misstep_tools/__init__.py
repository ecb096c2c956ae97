"""misstep-tools: Agent tools for misstep: a safe SymPy calculator and a local BM25 search."""
