#!/bin/sh
# azd preprovision hook: the function app uses azd's `language: custom`, an alpha feature.
# Enabling it here is a safety net; the README asks for it before the first `azd up`, because
# an azd process that already started may not re-read its configuration.
set -eu
azd config set alpha.language.custom on
