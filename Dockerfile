# Portico in a container: `docker build -t portico .`, then
#   docker run -p 8080:8080 -p 8888:8888 portico start --api-host 0.0.0.0 --data-dir /data
#   docker run portico start --data-plane-only --xds-server control-plane:18000
# The build stage compiles TypeScript; the image holds the compiled code and production dependencies only,
# and runs as the unprivileged `node` user.
FROM node:24-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY test ./test
COPY generated ./generated
RUN npx tsc -p tsconfig.json && npm prune --omit=dev

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /portico
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY package.json ./
COPY bin ./bin
COPY generated ./generated
RUN mkdir /data && chown node:node /data
USER node
VOLUME /data
# proxy, API and dashboard, admin, xDS
EXPOSE 8080 8888 9901 18000
ENTRYPOINT ["node", "/portico/bin/portico.js"]
CMD ["start", "--api-host", "0.0.0.0", "--xds-host", "0.0.0.0", "--data-dir", "/data"]
