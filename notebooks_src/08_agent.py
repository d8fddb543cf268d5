# %% [markdown]
# # 08 · Step 8: a coding agent in a sandbox, against the local model
#
# **What you will learn**
# - how to point a coding agent inside a sandbox at the model on the host;
# - how to watch its traffic in `sbx policy log`;
# - how the network policy governs local traffic: break it with a deny rule, watch it fail, restore.
#
# **Time:** 15 minutes · **Prerequisites:** notebooks 01–03.

# %% tags=["parameters"]
MODE = None
MODEL = None  # None: the mode's default model
OLD_SANDBOX = "dmr-test"
AGENT_SANDBOX = "dmr-agent"
WORKDIR = "/tmp/dmr-test"
TASK = "write a Python script that prints the first 10 Fibonacci numbers"

# %%
import labkit
from labkit import checks, exercises, widgets

lab = labkit.connect(mode=MODE)
model = MODEL or lab.default_model
agent = lab.agent
print(f"agent: {agent.name} · sandbox agent type: {agent.sandbox_agent} · model: {model}")

# %% [markdown]
# **Which agent?** In live mode this notebook runs **Codex** in an sbx `codex` sandbox. Two things
# differ from the seed's text there: current Codex ignores `OPENAI_BASE_URL` and rejects the chat
# API, so it needs a custom provider that speaks the Responses API (Docker Model Runner serves it),
# and it needs the model named with `-m`. In embedded mode the model has 135M parameters, far too
# small to drive Codex (measured: it loops), so the notebook runs **labkit's small coding agent**
# instead: the same wiring (the OpenAI SDK reading `OPENAI_BASE_URL` and `OPENAI_API_KEY`, inside a
# sandbox, through the proxy), a short readable loop, and an honest report when the model's code is
# wrong.
#
# ## Swap the shell sandbox for an agent sandbox
# The seed stops and removes the shell sandbox first:

# %%
old = lab.sandbox(OLD_SANDBOX)
if old.exists:
    old.stop()
    old.rm()

# %% [markdown]
# Then it creates the agent's sandbox on the same workspace (the seed names it `dmr-codex`):

# %%
box = lab.sandbox(AGENT_SANDBOX)
box.create(agent.sandbox_agent, ".", cwd=WORKDIR);

# %% [markdown]
# ## Run the agent
# The seed exports two variables inside the sandbox and starts the agent. `sbx exec -e` sets them
# for the one command:

# %%
print(f"OPENAI_BASE_URL={agent.env['OPENAI_BASE_URL']}")
print(f"OPENAI_API_KEY={agent.env['OPENAI_API_KEY']}")

# %% tags=["nbval-ignore-output"]
run = box.exec(agent.command(TASK, model), env=agent.env, timeout=600)

# %% [markdown]
# The agent's words and code change from run to run. What it did is checked from evidence:

# %%
checks.agent_run(lab, AGENT_SANDBOX, run);

# %% [markdown]
# ## Watch the policy log
# In a separate host terminal you would run `sbx policy log dmr-codex` during the run. Every
# inference request shows up as an allowed `localhost:12434` entry: proof that the agent talked to
# the local model and nothing else.

# %%
lab.host(f"sbx policy log {AGENT_SANDBOX}");

# %% [markdown]
# ## Try breaking it
# The seed: stop the sandbox, change the allow rule to a deny, restart, and the agent fails to reach
# the model. A deny rule beats any allow rule, so adding one is enough:

# %%
box.stop()
lab.host(f"sbx policy deny network {lab.endpoints.rule}");

# %% tags=["nbval-ignore-output"]
blocked = box.exec(agent.command(TASK, model), env=agent.env, timeout=600)

# %%
checks.agent_blocked(lab, AGENT_SANDBOX, blocked);

# %% [markdown]
# The log now has a **Blocked requests** section with the model port:

# %%
lab.host(f"sbx policy log {AGENT_SANDBOX}");

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
lab.host(f"sbx policy check network {lab.endpoints.rule}");

# %% [markdown]
# ## What just happened
# The agent ran inside a sandbox, the model on the host, and the only thing crossing the boundary was
# OpenAI-compatible JSON over HTTP through the proxy: no cloud, no secrets leaving the host, no
# tokens billed. One deny rule cut it off, and the log recorded both the allowed and the blocked
# requests.
#
# ## Your turn
# Give the agent a task of your own now that access is restored (run
# `box.exec(agent.command("…", model), env=agent.env)`). The checkpoint looks in the audit records for
# the agent's requests after the blocked ones.

# %%
# Exercise: a task of your own

# %% [markdown]
# <details><summary>Solution</summary>
#
# ```python
# box.exec(agent.command("write a Python script that prints the squares of 1 to 5", model), env=agent.env)
# ```
# </details>

# %% [markdown]
# ## Checkpoint

# %%
checks.step8_agent(lab, AGENT_SANDBOX)
exercises.agent_after_restore(lab, AGENT_SANDBOX);
