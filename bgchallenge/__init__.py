"""bgchallenge: copies remote images into object storage, reliably and in the background."""
