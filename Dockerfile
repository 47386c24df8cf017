FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bgchallenge ./bgchallenge
COPY sql ./sql
RUN pip install --no-cache-dir .
ENV PORT=8000
EXPOSE 8000
CMD ["bgchallenge", "serve", "--host", "0.0.0.0"]
