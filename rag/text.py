"""Word-level text helpers shared by retrieval and the readers.

Kept apart from ``rag.retrieval`` so that the readers (and reader training, which runs on
machines without FAISS) do not import the retrieval stack.
"""

from __future__ import annotations

# Function words dropped from BM25 queries and from the readers' overlap scores: they cost
# posting-list reads and add no signal (their IDF is near zero anyway). The usual short
# English list.
STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have he her his how i if in "
    "into is it its of on or she that the their them they this to was were what when where "
    "which who whom whose why will with you".split()
)
