"""The S3 edge: the only package that imports boto3."""
