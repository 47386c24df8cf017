"""The workers: dispatcher, download workers, the fetcher and the pipeline of one attempt."""
