# The backend, built from this repository. SQLite needs cgo, so the build stage has gcc
# and the runtime image keeps glibc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o /out/extension-backend ./cmd/extension-backend

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/extension-backend --create-home app
COPY --from=build /out/extension-backend /usr/local/bin/extension-backend
USER app
WORKDIR /var/lib/extension-backend
EXPOSE 8080
ENTRYPOINT ["extension-backend"]
CMD ["serve"]
