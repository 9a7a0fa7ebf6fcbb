FROM golang:1.22 AS build
RUN go build -o /out/app ./cmd/other

FROM debian:12
RUN apt-get update
COPY README.md /README.md
COPY --from=build /out/app /app
USER root
