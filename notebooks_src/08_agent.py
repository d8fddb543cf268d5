# %% [markdown]
# # 08 · Step 8: a coding agent in a sandbox, against the local model
#
# **What you will learn**
# - how to point a real coding agent inside a sandbox at the model on the host: Codex (OpenAI's
#   Responses API) and Claude Code (Anthropic's Messages API), with configuration labkit generates;
# - why `export OPENAI_BASE_URL=…`, this module's original instruction, no longer keeps Codex
#   local, and what does: a rule;
# - how to watch an agent's traffic in `sbx policy log`, break it with a deny rule, and restore it.
#
# **Time:** 20 minutes · **Prerequisites:** notebooks 01–03.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's default model
OLD_SANDBOX = "dmr-test"
CODEX_SANDBOX = "dmr-codex"
CLAUDE_SANDBOX = "dmr-claude"
WORKDIR = "/tmp/dmr-test"
TASK = "write a Python script fib.py that prints the first 10 Fibonacci numbers, then run it"
AGENT_TIMEOUT = 100  # seconds: a bounded run, whatever the model does
LITERAL_TIMEOUT = 20  # seconds for the OPENAI_BASE_URL-only setup, which never reaches the model

# %%
import json

import labkit
from labkit import checks, exercises, widgets

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
lab.prepare(model=model, workdir=WORKDIR, allow_model_port=True)  # what notebooks 01–03 set up, if missing
print(f"model: {model} · Codex installed: {lab.agent_installed('codex')} · "
      f"Claude Code installed: {lab.agent_installed('claude')}")

# %% [markdown]
# **Two agents, two APIs, one model.** Current Codex speaks only OpenAI's Responses API; Claude Code
# only Anthropic's Messages API. Docker Model Runner serves both on the same port, so both agents can
# use the local model. Two facts shape this step (both measured on the pinned versions):
# - **Codex ignores `OPENAI_BASE_URL`** (since April 2026): it needs a configuration file with a
#   provider of its own. And it always sends an `include` field that **Docker Model Runner after
#   1.2.6 refuses** (HTTP 400); DMR 1.2.6 accepts it. So Codex works against DMR ≤ 1.2.6 only.
# - **Claude Code** needs only environment variables, and DMR passes its requests through: it is
#   the agent that completes this step wherever DMR refuses Codex.
#
# In embedded mode the model has 135M parameters: far too small to drive an agent's loop (measured:
# it answers in prose, or repeats itself). The runs are bounded, and what this step checks is the
# wiring: where the agent's requests went, what the model server answered, what the policy did.
#
# ## Swap the shell sandbox for an agent sandbox
# This module stops and removes the shell sandbox first:

# %%
old = lab.sandbox(OLD_SANDBOX)
if old.exists:
    old.stop()
    old.rm()

# %% [markdown]
# Then it creates Codex's sandbox on the same workspace, with the `codex` agent:

# %%
box = lab.sandbox(CODEX_SANDBOX)
codex_ready = lab.agent_installed("codex")
if codex_ready:
    box.create("codex", ".", cwd=WORKDIR)
else:
    print("Codex is not installed here (make lab installs it): the Codex part of this step is skipped")

# %% [markdown]
# ## Codex's configuration, generated
# labkit writes Codex's two files into the sandbox's `~/.codex/` (the same generator serves live
# mode): `config.toml` turns off what would leave the machine, and the profile `dmr.config.toml`
# names the model, an own provider (`dmr`: Codex's built-in ids cannot be repointed) at
# `http://host.docker.internal:12434/v1` (every DMR version answers Responses there), and switches
# off the tools DMR cannot take. Each line says why:

# %%
if codex_ready:
    codex = lab.codex(model, box.home())
    box.write_files(codex.files)
    print(codex.files[".codex/dmr.config.toml"])

# %% [markdown]
# ## Run Codex
# Non-interactive, with the profile: `codex exec --profile dmr …`.

# %% tags=["nbval-ignore-output", "agent-run"]
if codex_ready:
    codex_run = box.exec(codex.command(TASK), timeout=AGENT_TIMEOUT)

# %% [markdown]
# What happened is read from evidence, not from Codex's words: did its requests cross the boundary,
# and what did the model server answer? Against DMR after 1.2.6 (and labkit's embedded server, which
# behaves like it unless `LABKIT_DMR_COMPAT=1.2.6`), the answer is HTTP 400.

# %%
if codex_ready:
    checks.agent_answered(lab, CODEX_SANDBOX)

# %% [markdown]
# The model runner's request log says why (its newest record for the model):

# %% tags=["nbval-ignore-output"]
requests_log = lab.host(f"docker model requests --model {model}", echo=False)
newest = json.loads(requests_log.stdout)[0]["records"][-1] if requests_log.ok and requests_log.stdout.strip() else {}
print(f"$ docker model requests --model {model}   # the newest record, summarised")
print(newest.get("method"), newest.get("url"), newest.get("status_code"), (newest.get("error") or "")[:160])

# %% [markdown]
# ## Claude Code: the agent that completes the step
# Its own sandbox, with the `claude` agent, and the environment labkit generates: the model server
# as `ANTHROPIC_BASE_URL` (the root: Claude Code adds `/v1/messages`), every model alias it may use in
# the background set to the local model, and its telemetry and other traffic off.

# %%
claude = lab.claude(model) if lab.agent_installed("claude") else lab.small_agent(model)
print(f"agent: {claude.name}")
cbox = lab.sandbox(CLAUDE_SANDBOX)
cbox.create(claude.sandbox_agent, ".", cwd=WORKDIR)
for name, value in claude.env.items():
    print(f"{name}={value}")

# %% tags=["nbval-ignore-output", "agent-run"]
claude_run = cbox.exec(claude.command(TASK), env=claude.env, timeout=AGENT_TIMEOUT)

# %% [markdown]
# The agent's words and code change from run to run (and a 135M model rarely finishes the task).
# What it did is checked from evidence:

# %%
checks.agent_run(lab, CLAUDE_SANDBOX, claude_run)

# %% [markdown]
# ## Watch the policy log
# In a host terminal you would run `sbx policy log dmr-claude` during the run. Every request is an
# entry; the only destination is the model port:

# %% tags=["nbval-ignore-output"]
lab.host(f"sbx policy log {CLAUDE_SANDBOX}")

# %%
checks.only_model_port(lab, CLAUDE_SANDBOX)

# %% [markdown]
# ## Try breaking it
# This module's test: change the allow rule to a deny and the agent fails to reach the model. A deny rule
# beats any allow rule, so adding one is enough:

# %%
cbox.stop()
lab.host(f"sbx policy deny network {lab.endpoints.rule}")

# %% tags=["nbval-ignore-output", "agent-run"]
blocked = cbox.exec(claude.command(TASK), env=claude.env, timeout=AGENT_TIMEOUT)

# %%
checks.agent_blocked(lab, CLAUDE_SANDBOX, blocked)

# %% [markdown]
# The log now has a **Blocked requests** section with the model port:

# %% tags=["nbval-ignore-output"]
lab.host(f"sbx policy log {CLAUDE_SANDBOX}")

# %% [markdown]
# The policy switch shows the deny in force; the cell after it restores access by removing the
# deny rule (by its id, so the allow rule stays).

# %% tags=["nbval-ignore-output"]
switch = widgets.PolicySwitch(lab, lab.endpoints.rule)
switch

# %%
for rule in lab.policy.rules_for(lab.endpoints.rule):
    if rule.decision == "deny":
        lab.host(f"sbx policy rm network --id {rule.id}")
switch.refresh()  # the switch above now shows the allow again (its ↻ button does the same)
lab.host(f"sbx policy check network {lab.endpoints.rule}")

# %% [markdown]
# ## The original instruction, and where Codex really goes
# This module first said: `export OPENAI_BASE_URL=http://host.docker.internal:12434/v1`, then run Codex.
# Current Codex ignores that variable. Run it that way, with no profile: it never reaches the model
# and keeps retrying, so the cell stops it after LITERAL_TIMEOUT seconds (the ✗ line says so):

# %% tags=["nbval-ignore-output", "agent-run"]
literal_env = {"OPENAI_BASE_URL": f"http://host.docker.internal:{lab.port}/v1", "OPENAI_API_KEY": "sk-local"}
if codex_ready:
    literal = box.exec(["codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                        TASK], env=literal_env, timeout=LITERAL_TIMEOUT)

# %% [markdown]
# The policy log shows where it went: OpenAI's cloud (and its other hosts), **allowed** by the
# `balanced` preset, which allows AI services and code hosts. On a machine with internet access the
# "local" agent would quietly talk to the cloud; here the requests only fail for lack of a network.

# %% tags=["nbval-ignore-output"]
if codex_ready:
    lab.host(f"sbx policy log {CODEX_SANDBOX}")

# %% [markdown]
# A variable did not keep the agent local; a rule does. Deny those hosts, run the same command again,
# and the log shows them blocked:

# %% tags=["nbval-ignore-output", "agent-run"]
lab.host("sbx policy deny network api.openai.com,chatgpt.com,github.com,api.github.com")
if codex_ready:
    literal_denied = box.exec(["codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                               TASK], env=literal_env, timeout=LITERAL_TIMEOUT)

# %% tags=["nbval-ignore-output"]
if codex_ready:
    lab.host(f"sbx policy log {CODEX_SANDBOX}")

# %% [markdown]
# (Those deny rules stay: they are good defaults for this course. `sbx policy ls` shows them, and
# `sbx policy rm network --resource …` removes one.)
#
# ## What just happened
# Real coding agents ran inside sandboxes, the model on the host, and the only thing crossing the
# boundary was their API traffic through the proxy: no cloud, no keys, no tokens billed. A generated
# configuration, not an environment variable, pointed them at the model; a rule, not a variable,
# kept them local; one deny rule cut them off, and the log recorded every request.
#
# ## Your turn
# Give Claude Code a task of your own now that access is restored
# (`cbox.exec(claude.command("…"), env=claude.env, timeout=AGENT_TIMEOUT)`). The checkpoint looks in
# the audit records for the agent's requests after the blocked ones. The checkpoint's `exercise`
# line shows ✗ until you have done this: that is expected.

# %%
# Exercise: a task of your own

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# cbox.exec(claude.command("write a Python script that prints the squares of 1 to 5"), env=claude.env,
#           timeout=AGENT_TIMEOUT)
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step8_agent(lab, CLAUDE_SANDBOX)
exercises.agent_after_restore(lab, CLAUDE_SANDBOX)

# %% [markdown]
# ## What's next
# Notebook **09**: the pitch, the troubleshooting table reproduced live, the whole module's checkpoint, and cleanup.
#
# ## Resources
# - [Docker Sandboxes](https://docs.docker.com/ai/sandboxes/): sandboxes, the `sbx` CLI, network policy.
# - [`sbx policy log`](https://docs.docker.com/reference/cli/sbx/policy/log/): the allowed and blocked hosts, per sandbox.
# - [Docker Model Runner](https://docs.docker.com/ai/model-runner/): the model server on the host.
# - [Run Claude Code in a Docker Sandbox with Docker Model Runner](https://docs.docker.com/guides/claude-code-sandbox-model-runner/):
#   Docker's guide to the same architecture.
# - [Codex's advanced configuration](https://developers.openai.com/codex/config-advanced): profiles and custom model providers.
# - [This repository's notes on the agent APIs](../docs/dmr-agent-apis.md) (§7): what Codex and Claude Code need from the model server, as measured.
