"""Framework stores over vqdb (optional extras; each module imports its framework, this package nothing):

* :mod:`vqdb.integrations.langchain` — ``VqdbVectorStore``, a LangChain ``VectorStore`` (``pip install vqdb[langchain]``);
* :mod:`vqdb.integrations.llama_index` — ``VqdbVectorStore``, a LlamaIndex vector store (``vqdb[llama-index]``);
* :mod:`vqdb.integrations.haystack` — ``VqdbDocumentStore`` and ``VqdbEmbeddingRetriever`` (``vqdb[haystack]``).

The Qdrant-compatible REST API is part of ``vqdb serve`` (:mod:`vqdb.server.qdrant`).
"""
