# Production image: real PostgreSQL and Redis are required (NODE_ENV=production refuses the
# embedded ones). Build: docker build -t thisthat .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md config.toml ./
COPY server ./server
COPY game ./game
COPY storage ./storage
COPY feeds ./feeds
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 thisthat
COPY --from=build /install /usr/local
COPY config.toml /app/config.toml
WORKDIR /app
ENV NODE_ENV=production \
    THISTHAT_CONFIG=/app/config.toml \
    PORT=3000 \
    PYTHONUNBUFFERED=1
USER thisthat
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=2).status == 200 else 1)"
CMD ["thisthat", "serve"]
