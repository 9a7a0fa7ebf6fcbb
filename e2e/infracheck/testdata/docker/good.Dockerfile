# comment
FROM golang:1.26 AS build
WORKDIR /src/gateway
COPY gateway/ ./
RUN go build -o /out/mcpgate ./cmd/mcpgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcpgate /mcpgate
USER nonroot:nonroot
ENTRYPOINT ["/mcpgate"]
