# %% [markdown]
# # 05 · Step 5: reach the model from inside the sandbox
#
# **What you will learn** the three networking facts inside a sandbox, each demonstrated:
# 1. `localhost` inside is the sandbox's own loopback, not your host;
# 2. `host.docker.internal` reaches your host, through the policy proxy;
# 3. `model-runner.docker.internal` does not resolve inside a sandbox.
#
# **Time:** 10 minutes · **Prerequisites:** notebooks 02 and 03 (the sandbox and the allow rule).

# %% tags=["parameters"]
MODE = None
SANDBOX = "dmr-test"
WORKDIR = "/tmp/dmr-test"

# %%
import labkit
from labkit import checks, exercises, widgets

lab = labkit.connect(mode=MODE)
box = lab.prepare(sandbox=SANDBOX, workdir=WORKDIR, allow_model_port=True)  # 02 and 03, made here if missing

# %% [markdown]
# ## How traffic leaves a sandbox
# A sandbox has no route to your host or the internet. Its only way out is the proxy that sbx puts
# in its environment, and every HTTP client honours these variables:

# %%
box.exec("bash -c 'env | grep -i _proxy | sort'")

# %% [markdown]
# `NO_PROXY` keeps `localhost` traffic inside the sandbox. Everything else goes to
# `gateway.docker.internal:3128`, the proxy, which decides by policy and logs the request.
#
# ## Fact 1: `localhost` is the sandbox's own loopback
# The model server listens on your host's `localhost:12434`, yet from inside:

# %%
box.exec(f"curl -sS http://localhost:{lab.port}/engines/llama.cpp/v1/models")

# %% [markdown]
# `curl: (7)` is *connection refused*: nothing listens on the sandbox's own port 12434.
#
# ## Fact 2: `host.docker.internal` reaches your host, through the proxy
# This module's command, verbatim:

# %%
box.exec(f"curl -s http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/models | head -30")

# %% [markdown]
# The same list you saw on the host in notebook 01: the proxy matched the request as
# `localhost:12434` (your allow rule), forwarded it to the host's port and wrote one audit record.
# The audit view shows the proxy's latest records; blocked ones are marked ✗.

# %% tags=["nbval-ignore-output"]
audit_view = widgets.AuditView(lab, sandbox=SANDBOX)
audit_view

# %% [markdown]
# ## Fact 3: `model-runner.docker.internal` does not resolve
# Docker Desktop gives containers that name for the model runner; sandboxes do not have it. The
# sandbox's resolver knows it not (`getent` prints nothing and fails), and `curl` that goes
# direct, bypassing the proxy, fails with `curl: (6)`:

# %%
box.exec("getent hosts model-runner.docker.internal")

# %%
box.exec("curl -sS --noproxy '*' http://model-runner.docker.internal/engines/v1/models")

# %% [markdown]
# Through the proxy the name is simply not allowed, so the proxy answers 403 before it would even
# look the name up (policy is decided before DNS):

# %%
box.exec("curl -s http://model-runner.docker.internal/engines/v1/models")

# %% [markdown]
# ## What just happened
# `localhost` stayed inside the sandbox; `host.docker.internal:12434` crossed the boundary because a
# rule allows `localhost:12434`; other names do not resolve, and the proxy blocks what no rule
# allows. `sbx policy log` aggregates what the proxy saw, per host:

# %%
lab.host(f"sbx policy log {SANDBOX}")

# %% [markdown]
# ## Your turn
# Ask the model API for one model by id from inside the sandbox:
# `GET http://host.docker.internal:12434/engines/llama.cpp/v1/models/<id>`. The checkpoint looks for
# that request in the audit records. The checkpoint's `exercise` line shows ✗ until you have done this: that is expected.

# %%
# Exercise: request one model by id from inside the sandbox

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# model_id = lab.model_ids()[0]
# box.exec(f"curl -s http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/models/{model_id}")
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step5_network(lab, SANDBOX)
exercises.model_by_id(lab, SANDBOX)

# %% [markdown]
# ## What's next
# Notebook **06**: send a chat completion from inside the sandbox to the model on the host.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
# - [Policies](https://docs.docker.com/ai/sandboxes/security/policy/): presets, rules, and how deny beats allow.
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Docker Model Runner's REST API](https://docs.docker.com/ai/model-runner/api-reference/): base URLs, routes, and the OpenAI, Anthropic and Ollama formats.
# - [Run Claude Code in a Docker Sandbox with Docker Model Runner](https://docs.docker.com/guides/claude-code-sandbox-model-runner/):
#   Docker's guide to the same architecture.
