"""The example answers behind the demo recordings.

No model is reachable where this project is built and tested, so the demo
notebooks replay answers written for them. They are kept here, in the exact
shape a chat model returns (the plans arrive as JSON in a fence with prose
around it, a trailing comma, a dependency named by task name, durations as
words), and served by ``make_recordings.py`` from an OpenAI-compatible server
on loopback while the notebooks run in record mode. To use your own model's
answers instead, see the README ("Recording your own answers").
"""

from __future__ import annotations

import json
import re

QUICKSTART_GOAL = "Write a one-page briefing on heat pumps for a city council"
MARKET_GOAL = "Write a market research report on solid-state batteries for EV makers"
PRICES_GOAL = "Write a market and price report on solid-state batteries for EV makers"

QUICKSTART_PLAN = """Sure — here is a plan for the briefing. Steps 1 and 2 can start at once.

```json
{
  "subtasks": [
    {"id": "task_1", "name": "How heat pumps work",
     "description": "Explain in plain words how air-source and ground-source heat pumps heat a home.",
     "dependencies": [], "estimated_time": "10 minutes"},
    {"id": "task_2", "name": "Costs and savings",
     "description": "Estimate installation costs and yearly running savings for a typical household.",
     "dependencies": [], "estimated_time": "15 min",},
    {"id": "task_3", "name": "Local grid impact",
     "description": "Assess what many heat pumps would mean for the local electricity grid in winter.",
     "dependencies": ["How heat pumps work"], "estimated_time": "20 minutes"},
    {"id": "task_4", "name": "Policy options",
     "description": "List three policy options the council could adopt, with pros and cons.",
     "dependencies": ["task_2", "task_3"], "estimated_time": "15 minutes"},
    {"id": "task_5", "name": "Briefing",
     "description": "Write the one-page briefing for councillors from the results above.",
     "dependencies": "task_1, task_2, task_3, task_4", "estimated_time": "10 min"},
  ]
}
```

Let me know if you want the briefing to focus on a particular neighbourhood."""

MARKET_PLAN = """Here's a structured plan. Loading the data and drawing the charts use the Python \
functions you listed; the analysis steps are for the language model.

```json
{"subtasks": [
  {"id": "task_1", "name": "Load market data", "kind": "python", "function": "load_market_data",
   "description": "Load the market-size and competitor tables.",
   "dependencies": [], "estimated_time": 1},
  {"id": "task_2", "name": "Market size chart", "kind": "python", "function": "market_size_chart",
   "description": "Chart demand by region and year.",
   "dependencies": ["task_1"], "estimated_time": "2 min"},
  {"id": "task_3", "name": "Competitor chart", "kind": "python", "function": "competitor_chart",
   "description": "Chart the competitors by energy density and cost.",
   "dependencies": ["task_1"], "estimated_time": "2 min"},
  {"id": "task_4", "name": "Market sizing", "kind": "llm",
   "description": "From the data, describe the market size and growth to 2030 by region, with the main drivers.",
   "dependencies": ["task_1"], "estimated_time": "15 minutes"},
  {"id": "task_5", "name": "Competitive landscape", "kind": "llm",
   "description": "Compare the main developers on energy density, cost, capacity and partnerships.",
   "dependencies": ["Load market data"], "estimated_time": "20 minutes"},
  {"id": "task_6", "name": "Technology and cost outlook", "kind": "llm",
   "description": "Summarise where oxide, sulfide and polymer electrolytes stand and the path to cost parity.",
   "dependencies": [], "estimated_time": "15-20 minutes"},
  {"id": "task_7", "name": "Risks and opportunities", "kind": "llm",
   "description": "Identify the main risks and opportunities for EV makers.",
   "dependencies": ["task_4", "task_5", "task_6"], "estimated_time": "10 minutes"},
  {"id": "task_8", "name": "Executive summary", "kind": "llm",
   "description": "Write a half-page executive summary with three recommendations.",
   "dependencies": ["task_4", "task_5", "task_6", "task_7"], "estimated_time": "10 minutes"},
  {"id": "task_9", "name": "Solid-state batteries for EV makers", "kind": "report",
   "description": "Market report (illustrative data). Summary first, then each section with its chart.",
   "dependencies": ["task_8", "task_4", "task_2", "task_5", "task_3", "task_6", "task_7"],
   "estimated_time": "5 minutes"},
]}
```"""

# The same goal planned when no Python functions are registered (the README's notebook
# example, which imports nothing): every step is the model's, the report assembles them.
MARKET_PLAN_LLM_ONLY = """Here is a plan. The three analysis steps can run in parallel; the \
summary and the report come last.

```json
{"subtasks": [
  {"id": "task_1", "name": "Market sizing",
   "description": "Estimate the market size and growth to 2030 by region, with the main drivers.",
   "dependencies": [], "estimated_time": "15 minutes"},
  {"id": "task_2", "name": "Competitive landscape",
   "description": "Compare the main developers on energy density, cost, capacity and partnerships.",
   "dependencies": [], "estimated_time": "20 minutes"},
  {"id": "task_3", "name": "Technology and cost outlook",
   "description": "Summarise where oxide, sulfide and polymer electrolytes stand and the path to cost parity.",
   "dependencies": [], "estimated_time": "15-20 minutes"},
  {"id": "task_4", "name": "Risks and opportunities",
   "description": "Identify the main risks and opportunities for EV makers.",
   "dependencies": ["task_1", "task_2", "task_3"], "estimated_time": "10 minutes"},
  {"id": "task_5", "name": "Executive summary",
   "description": "Write a half-page executive summary with three recommendations.",
   "dependencies": ["task_1", "task_2", "task_3", "task_4"], "estimated_time": "10 minutes"},
  {"id": "task_6", "name": "Solid-state batteries for EV makers", "kind": "report",
   "description": "Market report (illustrative figures). Summary first, then each section.",
   "dependencies": ["Executive summary", "task_1", "task_2", "task_3", "task_4"],
   "estimated_time": "5 minutes"},
]}
```"""

# notebook 06: the price survey failed (the data broker is down); the rest of the plan
REPLAN_PRICES = """The data broker is down, so buying the survey again now would fail the \
same way. The competitor table you already loaded has each developer's cell cost, so \
estimate prices from it instead. The remaining steps:

```json
{"subtasks": [
  {"id": "task_6", "name": "Prices from public data", "kind": "llm",
   "description": "Estimate cell prices per developer from the competitor table (USD/kWh at pilot scale) and how they fall to 2030.",
   "dependencies": ["task_1"], "estimated_time": "10 minutes"},
  {"id": "task_4", "name": "Pricing and recommendations", "kind": "llm",
   "description": "From the market size and the prices, write three recommendations for EV makers.",
   "dependencies": ["task_2", "task_6"]},
  {"id": "task_5", "name": "Solid-state batteries: market and prices", "kind": "report",
   "description": "Market and price report (illustrative data).",
   "dependencies": ["task_2", "task_6", "task_4"]}
]}
```"""

STEPS: dict[str, str] = {
    "How heat pumps work": """\
A heat pump moves heat instead of making it. An **air-source** unit pulls warmth from outdoor \
air — even at −10 °C — and concentrates it with a compressor, much like a fridge in reverse. \
A **ground-source** unit does the same with pipes buried in the garden, where the temperature \
is steadier, so it is more efficient but costs more to install.

For every unit of electricity, a typical heat pump delivers **3 to 4 units of heat** over a \
year. It works best with low-temperature radiators or underfloor heating and a reasonably \
well-insulated home.""",
    "Costs and savings": """\
| | Air-source | Ground-source |
|---|---|---|
| Installed cost | 9,000–14,000 | 18,000–30,000 |
| Yearly running cost | 900–1,200 | 700–1,000 |
| Saving vs. gas boiler | 150–400 a year | 300–600 a year |

Figures are typical ranges for a three-bedroom house{currency}. Savings depend on the \
electricity-to-gas price ratio; grants shorten the payback from 15+ years to about 7.""",
    "Local grid impact": """\
Winter evenings are the critical hour: if 30 % of homes switched, the peak load on a typical \
neighbourhood transformer would rise by roughly **40–60 %**. Most transformers have headroom \
for 10–20 % adoption; beyond that the network operator will need reinforcement or \
**smart tariffs** that pre-heat homes before the evening peak. Ground-source units and good \
insulation reduce the peak noticeably.""",
    "Policy options": """\
1. **Top-up grants** for low-income households — fast impact; needs a budget line.
2. **Heat-pump-ready planning rules** for new builds — no cost to the council; slow to show.
3. **Street-by-street pilots** with the grid operator — tackles grid limits; needs partners.
{grant}""",
    "Briefing": """\
# Heat pumps: a briefing for the council

**What they are.** Heat pumps move heat from the air or ground into homes, giving 3–4 units \
of heat per unit of electricity.

**Costs.** Installation is expensive, running costs are lower than gas; with grants the \
payback falls to about seven years.

**The grid.** The local network can absorb the first 10–20 % of homes; beyond that, smart \
tariffs and reinforcement are needed.

**Recommendation.** Start with street-by-street pilots alongside the grid operator, and \
target top-up grants at low-income households.""",
    "Market sizing": """\
## Market size and growth

Demand for solid-state cells grows from about **1.9 GWh in 2024 to 71.5 GWh in 2030** in \
this illustrative data set — a compound growth of roughly 80 % a year.

- **Asia** keeps more than half of demand throughout (38 GWh in 2030), led by Japanese, \
Korean and Chinese makers.
- **Europe** grows fastest from a low base (0.4 → 19 GWh), pulled by premium OEM launches.
- **North America** follows at 14.5 GWh by 2030.

Drivers: range and fast-charging targets, safety (no flammable liquid electrolyte), and \
OEM commitments to launch first models in 2027–2028.""",
    "Competitive landscape": """\
## Competitive landscape

| Developer | Chemistry | Wh/kg | USD/kWh | Pilot GWh | Partner |
|---|---|---|---|---|---|
| Toyota | sulfide | 420 | 210 | 0.5 | in-house |
| Samsung SDI | sulfide | 410 | 190 | 0.8 | Hyundai |
| QuantumScape | oxide | 400 | 180 | 1.0 | Volkswagen |
| Solid Power | sulfide | 390 | 200 | 0.3 | BMW |
| CATL | condensed | 380 | 140 | 2.0 | several |
| ProLogium | oxide-polymer | 360 | 160 | 1.5 | Mercedes-Benz |

**Toyota and Samsung SDI lead on energy density; CATL leads on cost and capacity.** \
Partnerships with OEMs are the deciding asset: every developer has one anchor customer.""",
    "Technology and cost outlook": """\
## Technology and cost outlook

- **Sulfide** electrolytes conduct best and suit high power, but react with moisture, which \
makes manufacturing expensive.
- **Oxide** electrolytes are stable but brittle; thin separators are the hard part.
- **Polymer** and hybrid designs are easiest to make but need heating to perform.

Cells cost **140–210 USD/kWh** at pilot scale versus about 100 for today's lithium-ion. \
Parity is expected late in the decade as lines scale past 10 GWh.""",
    "Risks and opportunities": """\
## Risks and opportunities

**Risks:** scale-up delays (pilot lines are 0.3–2 GWh), dendrite and cycle-life issues in \
fast charging, and supply of lithium metal and sulfide precursors.

**Opportunities:** a safety and range story premium buyers pay for, smaller packs for the \
same range, and early supply agreements while capacity is scarce.""",
    "Prices from public data": """\
## Prices from public data

Pilot-scale cells cost **140–210 USD/kWh** in the competitor table: CATL is cheapest \
(140), ProLogium next (160), and the sulfide developers dearest (Toyota 210, Solid \
Power 200). These are pilot-line figures; scaling lines past 10 GWh should bring them \
down by roughly a third by 2030, to about **100–130 USD/kWh** — near today's lithium-ion.

*Estimated from published pilot costs, not from quotes: treat them as ranges.*""",
    "Pricing and recommendations": """\
## Pricing and recommendations

Demand grows about 40-fold to ~72 GWh by 2030 while pilot prices sit 40–110 % above \
lithium-ion.

1. **Buy early capacity from the cheapest scaler** (CATL-class pricing, 140 USD/kWh) for a \
first premium model.
2. **Pay the sulfide premium only where density matters** — long-range flagships.
3. **Revisit prices with real quotes in 2027**, when lines pass 10 GWh and prices approach \
parity.""",
    "Executive summary": """\
## Executive summary

Solid-state batteries move from pilot to early production between 2026 and 2030; in this \
illustrative data demand grows about 40-fold to ~72 GWh. Asian developers lead on density, \
CATL on cost and capacity; Europe is the fastest-growing market.

**Recommendations**

1. Secure capacity early with one sulfide and one oxide supplier.
2. Launch in a premium model first, where the range and safety premium pays.
3. Keep lithium-ion for volume models until costs approach parity (~2029).""",
}


def plan_for(goal: str, *, with_functions: bool = True) -> str:
    """The demo plan for a goal; ``with_functions``: the prompt offered Python functions."""
    if goal.startswith(QUICKSTART_GOAL):
        return QUICKSTART_PLAN
    if goal.startswith(MARKET_GOAL):
        return MARKET_PLAN if with_functions else MARKET_PLAN_LLM_ONLY
    raise KeyError(f"no demo plan for the goal {goal!r}")


def replan_for(goal: str) -> str:
    if goal.startswith(PRICES_GOAL):
        return REPLAN_PRICES
    raise KeyError(f"no demo revision for the goal {goal!r}")


def answer(messages: list[dict[str, str]], *, planning: bool) -> str:
    """The demo answer to a chat request (planning, replanning, or one step of a plan)."""
    user = messages[-1]["content"]
    if messages[0]["content"].startswith("You repair a plan"):
        return replan_for(user.split("\n")[0].removeprefix("Goal:").strip())
    if planning:
        offered = "Python functions" in messages[0]["content"]
        return plan_for(user.split("\n")[0].strip(), with_functions=offered)
    match = re.search(r"^## Step: (.+)$", user, re.MULTILINE)
    if match is None:
        raise KeyError(f"not a demo prompt: {user[:80]!r}")
    step = match.group(1).strip()
    text = STEPS[step]
    return text.format(
        currency=", in euros" if "euro" in user else "",
        grant="\nA grant scheme (option 1) fits the budget best in the first year."
        if "grant" in user.split("## Results")[0]
        else "",
    )


if __name__ == "__main__":  # check that the plans and the revision parse
    from orchestra_nb import TaskGraph
    from orchestra_nb._parse import read_plan

    for plan in (QUICKSTART_PLAN, MARKET_PLAN, MARKET_PLAN_LLM_ONLY):
        print(json.dumps(TaskGraph.from_plan(plan).to_plan())[:100])
    print([entry.raw_id for entry in read_plan(REPLAN_PRICES).entries])
