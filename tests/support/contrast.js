// WCAG contrast of every visible button label and node label inside `root`, from computed
// styles: colours are composited (alpha) over what is behind them, up to the page's background.
(root) => {
  const parse = (c) => {
    let m = /rgba?\(([^)]+)\)/.exec(c);
    if (m) {
      const p = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p[3] ?? 1];
    }
    m = /color\(srgb ([^)]+)\)/.exec(c);
    if (m) {
      const p = m[1].split(/[\s/]+/).filter(Boolean).map(Number);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p[3] ?? 1];
    }
    m = /oklab\(([^)]+)\)/.exec(c);
    if (m) {
      const [L, a, b, alpha] = m[1].split(/[\s/]+/).filter(Boolean).map(Number);
      const l = (L + 0.3963377774 * a + 0.2158037573 * b) ** 3;
      const mm = (L - 0.1055613458 * a - 0.0638541728 * b) ** 3;
      const s = (L - 0.0894841775 * a - 1.291485548 * b) ** 3;
      const lin = [4.0767416621 * l - 3.3077115913 * mm + 0.2309699292 * s,
        -1.2684380046 * l + 2.6097574011 * mm - 0.3413193965 * s,
        -0.0041960863 * l - 0.7034186147 * mm + 1.707614701 * s];
      const enc = lin.map((v) => 255 * Math.min(1, Math.max(0, v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055)));
      return [...enc, alpha ?? 1];
    }
    throw new Error(`cannot read the colour ${c}`);
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const backdrop = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let colour = [255, 255, 255, 1];
    for (const c of layers.reverse()) colour = over(c, colour);
    return colour;
  };
  const lum = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const out = [];
  for (const b of root.querySelectorAll("button")) {
    if (!b.textContent.trim() || b.offsetParent === null) continue;
    const bg = backdrop(b);
    out.push({ what: `button ${b.textContent.trim()}`, ratio: ratio(over(parse(getComputedStyle(b).color), bg), bg) });
  }
  for (const g of root.querySelectorAll(".onb-node")) {
    const fill = getComputedStyle(g.querySelector(".onb-shape")).fill;
    const bg = over(parse(fill), backdrop(root));
    const text = getComputedStyle(g.querySelector(".onb-label")).fill;
    out.push({ what: `node ${g.dataset.task} (${g.dataset.status})`, ratio: ratio(over(parse(text), bg), bg) });
  }
  return out;
}
