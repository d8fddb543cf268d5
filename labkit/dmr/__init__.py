"""labkit's embedded Docker Model Runner: DMR's API and `docker model` CLI on real llama.cpp.

Modules, one job each: ``refs`` (model reference spellings), ``catalog`` (the GGUF files
shipped in installed packages), ``ggufmeta`` (DMR's config read from a GGUF), ``store`` (the
pulled models), ``params`` (request bodies → llama.cpp arguments), ``engine`` (queued
inference), ``httpio`` (Go/llama-server response shapes, job streams), ``inference`` (what the
APIs share: body limit, backends, ``InferenceError``), ``server`` (routes;
``python -m labkit.dmr.server``), ``service`` (`labkit up|down|status`), ``cli``
(`docker model …`).
"""
