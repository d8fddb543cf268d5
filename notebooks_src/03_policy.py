# %% [markdown]
# # 03 · Step 3: allow the model port through the network policy
#
# **What you will learn**
# - that a sandbox reaches nothing by default, not even a service on your own host;
# - how to add an allow rule for the model port and read it back;
# - why the rule says `localhost:12434` although the sandbox will call `host.docker.internal:12434`.
#
# **Time:** 5 minutes · **Prerequisites:** notebook 02.

# %% tags=["parameters"]
MODE = None
SANDBOX = "dmr-test"
EXTRA_HOST = "pypi.org"

# %%
import labkit
from labkit import checks, exercises, widgets

lab = labkit.connect(mode=MODE)
rule = lab.endpoints.rule  # "localhost:12434"

# %% [markdown]
# ## Before: what the policy says
# The lab starts from the `balanced` preset: **default deny**, plus a baseline list of common
# development hosts (package indexes, code hosts, AI APIs). The model port is not on it.
# `sbx policy check` asks the policy without sending anything:

# %%
lab.host(f"sbx policy check network {rule}")

# %% [markdown]
# ## Add the allow rule
# This module's command, verbatim:

# %%
lab.host(f"sbx policy allow network {rule}")

# %% [markdown]
# ## Verify
# This module verifies with `sbx policy ls | grep localhost`. Since sbx v0.35, plain `sbx policy ls`
# prints one summary line per policy (no hosts), so the rule shows up in the summary count; the
# `--wide` listing shows each rule with its resources, and that is where `grep` finds it.

# %%
lab.host("sbx policy ls")

# %%
lab.host("sbx policy ls --wide | grep localhost")

# %% [markdown]
# ## Why `localhost` and not `host.docker.internal`?
# Inside the sandbox you will call `http://host.docker.internal:12434`. The sbx proxy rewrites
# `host.docker.internal` to `localhost` **before** it matches the policy, so the rule that governs
# that traffic is `localhost:12434`. An allow rule on `host.docker.internal:12434` would not be the
# one enforced. (Real sbx's `policy check` matches names literally and can disagree with what the
# proxy enforces for `host.docker.internal`; labkit's check answers as its proxy enforces.)
#
# The switch below shows the rule in force for the model port and flips it between allow and deny
# by running the real `sbx policy` commands. Leave it on **allow** for the next notebooks.

# %% tags=["nbval-ignore-output"]
switch = widgets.PolicySwitch(lab, rule)
switch

# %% [markdown]
# ## What just happened
# One rule, `allow localhost:12434`, now lets sandboxes reach the host's model port through the
# proxy, and nothing else on your host. Deny rules always beat allow rules, and anything that
# matches no rule is denied.
#
# ## Your turn
# Add an allow rule for another host, `pypi.org` (set `EXTRA_HOST` to try another), and confirm it
# with `sbx policy check network`. The checkpoint reads the policy store. The checkpoint's `exercise` line shows ✗ until you have done this: that is expected.

# %%
# Exercise: allow EXTRA_HOST, then check it

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# lab.host(f"sbx policy allow network {EXTRA_HOST}")
# lab.host(f"sbx policy check network {EXTRA_HOST}")
# ```
# In the balanced preset `pypi.org` is already allowed by the baseline; the checkpoint looks for
# your own local rule.
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step3_policy(lab)
exercises.extra_rule(lab, EXTRA_HOST)

# %% [markdown]
# ## What's next
# Notebook **04**: look inside the sandbox: its hostname, its system, your workspace.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
# - [Policies](https://docs.docker.com/ai/sandboxes/security/policy/): presets, rules, and how deny beats allow.
# - [`sbx policy` CLI reference](https://docs.docker.com/reference/cli/sbx/policy/): `allow`, `deny`, `ls`, `log`, `rm`, `reset`.
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Run Claude Code in a Docker Sandbox with Docker Model Runner](https://docs.docker.com/guides/claude-code-sandbox-model-runner/):
#   Docker's guide to the same architecture.
