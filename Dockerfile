# emu-opcua: OPC UA server for EMU Professional II TCP/IP meters.
#   docker build -t emu-opcua .
#   docker run -p 4840:4840 emu-opcua                          # demo: simulated meters
#   docker run -p 4840:4840 -v $PWD/meters.toml:/config/meters.toml:ro -v emu-data:/data \
#              emu-opcua serve --config /config/meters.toml --pki-dir /data/pki --data-dir /data/history
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY emu_opcua ./emu_opcua
RUN pip install . \
 && useradd --system --create-home --home-dir /data --uid 10001 emu \
 && mkdir -p /data/pki /data/history /config \
 && chown -R emu /data

USER emu
WORKDIR /data
# The server certificate is generated into /data/pki on first start; keep it in a volume
# so clients that trusted it keep trusting it across container restarts. The history
# store (--data-dir /data/history; without it ./data of this WORKDIR, /data/data) is on
# the same volume: the meters' datalogs survive the container.
VOLUME ["/data"]
EXPOSE 4840

ENTRYPOINT ["emu-opcua"]
CMD ["serve", "--host", "0.0.0.0", "--pki-dir", "/data/pki"]
