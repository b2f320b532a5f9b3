# Production image: real PostgreSQL and Redis are required (NODE_ENV=production refuses the
# embedded ones), so it holds the bare package: no embedded, dev or loadtest extras.
# Build: docker build -t thisthat .   Configure with environment variables (README.md).
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
# The exact versions of requirements/base.txt first (a cached layer), then the package itself.
COPY requirements/base.txt ./requirements/base.txt
RUN /opt/venv/bin/python -m pip install --no-cache-dir -r requirements/base.txt
COPY pyproject.toml README.md ./
COPY server ./server
COPY game ./game
COPY storage ./storage
COPY feeds ./feeds
COPY services ./services
RUN /opt/venv/bin/python -m pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 thisthat
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    NODE_ENV=production \
    PORT=3000 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=2).status == 200 else 1)"]
CMD ["thisthat", "serve"]
