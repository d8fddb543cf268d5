# %% [markdown]
# # 09 · Wrap-up: the pitch, troubleshooting live, the checkpoint, cleanup
#
# **What you will learn**
# - how to explain this architecture in five sentences;
# - how to recognise and fix each common failure, by causing it on purpose;
# - how to verify the whole module from evidence, and how to clean up.
#
# **Time:** 15 minutes · **Prerequisites:** notebooks 01–08.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's default model
SANDBOX = "dmr-claude"
WORKDIR = "/tmp/dmr-test"
COURSE_SANDBOXES = ["dmr-test", "dmr-scratch", "dmr-codex", "dmr-claude"]

# %%
import json
import shlex

import labkit
from labkit import checks, widgets

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
rule = lab.endpoints.rule
box = lab.prepare(model=model, sandbox=SANDBOX, workdir=WORKDIR, allow_model_port=True)  # 01–03, 08, if missing

# %% [markdown]
# ## The pitch
# - **The agent is fully isolated.** It runs in a microVM: a boundary, not a container-escape risk.
# - **The model runs locally.** No cloud API costs, no third-party model exposure, no token limits.
# - **Secrets never leave the host.** Your API keys and SSH credentials stay outside the sandbox.
# - **The network is governed.** Even `localhost:12434` needs an explicit allow rule, and every
#   request is logged.
# - **It works air-gapped.** Regulated teams can run this pattern with zero cloud dependency.
#
# "Agent in a microVM, model on the host, zero cloud dependency": sbx plus Docker Model Runner.
# (In embedded mode the first bullet is a Linux namespace, not a microVM; the rest holds as shown.)
#
# ## Troubleshooting, reproduced live
# Each symptom from this module's troubleshooting table, caused on purpose, then fixed.
#
# ### 1. `curl localhost:12434` returns *connection refused* inside the sandbox
# Expected: `localhost` is the sandbox's own loopback.

# %%
box.exec(f"curl -sS http://localhost:{lab.port}/engines/llama.cpp/v1/models")

# %% [markdown]
# **Fix:** use `host.docker.internal`.

# %%
box.exec(f"curl -s -o /dev/null -w '%{{http_code}}\\n' http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/models")

# %% [markdown]
# ### 2. `curl host.docker.internal:12434` returns *Blocked by network policy*
# Cause it: remove the allow rule.

# %%
lab.host(f"sbx policy rm network --resource {rule}")
box.exec(f"curl -s http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/models")

# %% [markdown]
# Note that `curl` exits 0: the 403 is an HTTP answer from the proxy, so read the body (or use
# `curl -f`). **Fix:** add the allow rule on the host (this module's table also says to restart the
# sandbox; labkit's proxy applies the rule to the next request).

# %%
lab.host(f"sbx policy allow network {rule}")
box.exec(f"curl -s -o /dev/null -w '%{{http_code}}\\n' http://host.docker.internal:{lab.port}/engines/llama.cpp/v1/models")

# %% [markdown]
# ### 3. `model-runner.docker.internal` does not resolve
# That name exists for Docker Desktop's containers, not inside a sandbox.

# %%
box.exec("curl -sS --noproxy '*' http://model-runner.docker.internal/engines/v1/models")

# %% [markdown]
# **Fix:** only `host.docker.internal` reaches the host (see 1).
#
# ### 4. The agent reaches the model, but inference returns 404
# Cause it: name the model loosely, here without its quantization tag.

# %%
def chat_command(model_name: str) -> str:
    body = json.dumps({"model": model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5})
    return (f"curl -s -w '\\nHTTP %{{http_code}}\\n' http://host.docker.internal:{lab.port}"
            f"/engines/llama.cpp/v1/chat/completions -H 'Content-Type: application/json' -d {shlex.quote(body)}")


loose = model.split(":")[0]
box.exec(chat_command(loose))

# %% [markdown]
# Docker Model Runner answers 404 in plain text (not OpenAI's JSON): `ai/smollm2` means
# `ai/smollm2:latest`, which is not pulled. **Fix:** copy the exact id from `docker model ls` and
# pass it verbatim.

# %%
lab.host("docker model ls")
fixed = box.exec(chat_command(model), echo=False)
print(fixed.stdout.strip().splitlines()[-1])

# %% [markdown]
# ## Checkpoint: the whole module, from evidence
# Each item is verified from what really happened: the proxy's audit records (embedded mode) or
# `sbx policy log` (live mode), the workspace, and the policy store.

# %% tags=["nbval-ignore-output"]
checklist = checks.checklist(lab, agent_sandbox=SANDBOX, workspace=WORKDIR)
checklist

# %%
print(checklist.summary())

# %% [markdown]
# ## Clean up
# Remove the course's sandboxes and the rules this course added. The audit log stays (instructors:
# `labkit reset` archives it), and so do the models and the workspace.
#
# Cleaning up does not take your checkpoint away: the checklist reads evidence that outlives the
# sandboxes (the audit records, the policy log computed from them, and `test_local.py` in the
# workspace), so **verify again** after this cell still shows ✓. In live mode the evidence is
# `sbx policy log`, and sbx's documentation does not say whether it keeps the entries of a removed
# sandbox: there, verify before you clean up.

# %%
for name in COURSE_SANDBOXES:
    lab.sandbox(name).rm()
for resource in (rule, "pypi.org"):
    if lab.policy.rules_for(resource):
        lab.policy.rm(resource)
lab.host("sbx ls")
lab.host("sbx policy ls")

# %% [markdown]
# ## What's next
# You have finished the module. From here:
# - **Run it against the real tools.** Install Docker Desktop (with Model Runner's TCP port
#   enabled) and Docker Sandboxes, run `sbx policy init balanced`, and open notebook 00 again:
#   `labkit.connect` picks live mode.
# - **Use a model that can code.** In live mode, `docker model pull ai/qwen3:8B-Q4_K_M` and set
#   `MODEL` in the parameters cells of 06–08: the 135M model proves the wiring, not the agent.
# - **Keep the rule set small.** The pattern stays safe only while the policy allows the model port
#   and little else: `sbx policy log` shows what your agents really reach.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/) and its
#   [network policies](https://docs.docker.com/ai/sandboxes/security/policy/).
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/) and its
#   [REST API](https://docs.docker.com/ai/model-runner/api-reference/).
# - [Run Claude Code in a Docker Sandbox with Docker Model Runner](https://docs.docker.com/guides/claude-code-sandbox-model-runner/):
#   Docker's guide to the same architecture.
# - This repository's notes: [the course's design](../docs/design.md), and
#   [the facts about sbx and DMR](../docs/sbx-dmr-facts.md) that embedded mode reproduces.
