// Report charts in QuickJS (charts_ssr.py): the UI's option builders, drawn by ECharts as SVG.
// Loaded after echarts.min.js and the bundled modules (`__modules`).

// WeasyPrint ignores `paint-order`, so labels ECharts draws with a white outline come out
// white: report charts have no text outlines.
function withoutTextBorders(node) {
  if (Array.isArray(node)) {
    node.forEach(withoutTextBorders);
    return;
  }
  if (!node || typeof node !== "object") return;
  for (const key of Object.keys(node)) {
    const value = node[key];
    if ((key === "markLine" || key === "markArea" || key === "markPoint") && value && typeof value === "object") {
      value.label = Object.assign({ textBorderWidth: 0 }, value.label || {});
    }
    if (key === "label" && value && typeof value === "object" && !Array.isArray(value)) {
      value.textBorderWidth = 0;
    }
    withoutTextBorders(value);
  }
}

// A report's chart is about 680 px wide: a line of thousands of points prints as a blur, and
// each path node costs WeasyPrint memory and time. ECharts samples a line only when it has
// more points than pixels; LTTB keeps the peaks and dips an explanation may point at.
function withSampledLines(option) {
  const series = Array.isArray(option.series) ? option.series : option.series ? [option.series] : [];
  for (const s of series) {
    if (s && s.type === "line" && s.sampling === undefined) s.sampling = "lttb";
  }
}

function optionBuilder(kind) {
  const name = `${kind}Option`;
  for (const exports of Object.values(__modules)) {
    if (typeof exports[name] === "function") return exports[name];
  }
  throw new Error(`no chart kind "${kind}"`);
}

/** The chart `kind` of `payload` as SVG text, JSON-encoded (QuickJS returns ropes badly). */
function renderChart(kind, payload, colors, width, height) {
  const option = optionBuilder(kind)(payload, colors, { legend: true });
  option.animation = false;
  option.useUTC = true; // times arrive as the report's wall clock (charts_ssr.py)
  option.textStyle = Object.assign({ fontFamily: "DejaVu Sans, sans-serif" }, option.textStyle || {});
  withoutTextBorders(option);
  withSampledLines(option);
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width, height });
  try {
    chart.setOption(option);
    return JSON.stringify(chart.renderToSVGString());
  } finally {
    chart.dispose();
  }
}
