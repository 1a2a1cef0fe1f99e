// Time-series charts drawn by uPlot: one line per series, the last few minutes of live figures.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './ui.js';

const COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

/**
 * A line chart of `data` (uPlot's columns: times in seconds, then one array per series). The chart
 * is made again when the series change (a queue appears), otherwise only its data is set.
 */
export function LineChart({ title, series, data, height = 200 }) {
  const box = useRef(null);
  const plot = useRef(null);
  const names = series.join('\u0000');
  useEffect(() => {
    const el = box.current;
    const opts = {
      title,
      width: Math.max(300, el.clientWidth),
      height,
      series: [{}, ...series.map((label, i) => ({ label, stroke: COLOURS[i % COLOURS.length], width: 2, points: { show: false } }))],
      axes: [{}, { size: 60 }],
      scales: { x: { time: true } },
    };
    plot.current = new uPlot(opts, data, el);
    const resize = () => plot.current?.setSize({ width: Math.max(300, el.clientWidth), height });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [names, title, height]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  return html`<figure class="chart" aria-label=${title}><div ref=${box}></div></figure>`;
}
