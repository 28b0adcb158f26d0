# syntax=docker/dockerfile:1
# Build: a static binary (pure Go, no cgo needed: SQLite is modernc.org/sqlite).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/herald ./cmd/herald

# Run: distroless, non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /herald
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/herald"]
CMD ["serve"]
