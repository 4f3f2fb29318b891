# The Internal Service Controller image: the `isc` CLI on Node 24, compiled to JavaScript in a build
# stage (running the TypeScript sources through Node's type stripping costs about 20 MB more memory).
# Runs as uid 1000 and writes nothing outside /tmp, so it works with readOnlyRootFilesystem (see
# deploy/private/deployment.yaml).
#   docker build -t internal-service-controller:latest .
# Pin by digest in production: --build-arg NODE_IMAGE=node:24-alpine@sha256:...
ARG NODE_IMAGE=node:24.22.3-alpine

FROM ${NODE_IMAGE} AS build
WORKDIR /build
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src/ src/
RUN npm run build

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app

# Runtime dependencies only (package.json "dependencies"); no install scripts are needed.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY crds/ crds/
COPY --from=build /build/dist/ dist/

# Numeric, so the kubelet can verify runAsNonRoot (uid 1000 is the image's "node" user).
USER 1000:1000

ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["controller"]
