# Sluice's image: built in one stage, run in another as an unprivileged user.
#   docker build -t sluice .
#   docker run -p 8080:8080 -e SLUICE_MASTER_KEY=sk-sluice-master-… sluice
# Several replicas on shared Redis and Postgres: deploy/compose.yml (README: "Running more than one").

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Native modules (lmdb, msgpackr, uWebSockets.js) ship prebuilt binaries: no build tools needed.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY native ./native
COPY web ./web
COPY scripts ./scripts
COPY bench ./bench
COPY test ./test
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 SLUICE_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/dist/web ./dist/web
COPY --from=build /app/dist/native ./dist/native
# The data dir (LMDB: the local ledger and, in cluster mode, the outbox of rows not yet in
# Postgres) belongs to the unprivileged `node` user of the base image. Keep it on a volume:
# a replica that restarts on its volume ships what it acknowledged before it stopped.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/src/main.js"]
