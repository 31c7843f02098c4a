//! Charts as SVGs drawn by `plotters`: the page's loss curve and the reliability diagram
//! (predicted confidence against observed accuracy) of its evaluation, which `bench` also draws
//! for docs/results.md, and `bench-transfer`'s accuracy-vs-N plot. Plain data in, SVG text out:
//! no tensors, no DOM.

use plotters::prelude::*;

/// Width and height of the chart in pixels.
const SIZE: (u32, u32) = (360, 170);

/// An SVG of a loss curve (`(step or epoch, loss)` points, `caption` above it), or an empty
/// string when there are no points.
pub fn loss_svg(steps: &[(usize, f32)], caption: &str) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let mut svg = String::new();
    let drawn = draw(&mut svg, steps, caption);
    match drawn {
        Ok(()) => svg,
        Err(e) => format!("<p>chart: {e}</p>"),
    }
}

fn draw(svg: &mut String, steps: &[(usize, f32)], caption: &str) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let max_x = steps.iter().map(|s| s.0).max().unwrap_or(1).max(2) as f32;
    let max_y = steps
        .iter()
        .map(|s| s.1)
        .filter(|v| v.is_finite())
        .fold(0.1f32, f32::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .margin(6)
        .caption(caption, ("sans-serif", 13))
        .x_label_area_size(22)
        .y_label_area_size(36)
        .build_cartesian_2d(1f32..max_x, 0f32..max_y)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(5)
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            steps
                .iter()
                .filter(|s| s.1.is_finite())
                .map(|&(x, y)| (x as f32, y)),
            &RGBColor(37, 99, 235),
        ))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Colours of the methods in the reliability diagram: frozen, lora, hybrid (others grey).
fn method_colour(method: &str) -> RGBColor {
    match method {
        "frozen" => RGBColor(148, 163, 184),
        "lora" => RGBColor(37, 99, 235),
        "hybrid" => RGBColor(234, 88, 12),
        _ => RGBColor(100, 100, 100),
    }
}

/// A reliability diagram: for each method, the mean confidence and accuracy of its non-empty
/// confidence bins as a line, against the diagonal of perfect calibration.
pub fn reliability_svg(
    methods: &[(String, Vec<crate::train::calibration::Bin>)],
    caption: &str,
) -> String {
    let mut svg = String::new();
    match draw_reliability(&mut svg, methods, caption) {
        Ok(()) => svg,
        Err(e) => format!("<p>chart: {e}</p>"),
    }
}

fn draw_reliability(
    svg: &mut String,
    methods: &[(String, Vec<crate::train::calibration::Bin>)],
    caption: &str,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = SVGBackend::with_string(svg, (260, 230)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(6)
        .caption(caption, ("sans-serif", 12))
        .x_label_area_size(24)
        .y_label_area_size(30)
        .build_cartesian_2d(0f32..1f32, 0f32..1f32)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_labels(6)
        .y_labels(6)
        .x_desc("confidence")
        .y_desc("accuracy")
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            [(0f32, 0f32), (1.0, 1.0)],
            &RGBColor(203, 213, 225),
        ))
        .map_err(|x| e(&x))?;
    for (method, bins) in methods {
        let colour = method_colour(method);
        let points: Vec<(f32, f32)> = bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.confidence as f32, b.accuracy as f32))
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(method.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 10))
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Lines of accuracy (%) against N (log2 scale on x), one per named series of `(N, accuracy)`
/// points, with a legend.
pub fn accuracy_vs_n_svg(
    series: &[(String, Vec<(usize, f64)>)],
    caption: &str,
) -> Result<String, String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let mut ns: Vec<usize> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .collect();
    ns.sort_unstable();
    ns.dedup();
    let (Some(&first), Some(&last)) = (ns.first(), ns.last()) else {
        return Err("no points".into());
    };
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold((100.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let x = |n: usize| (n.max(1) as f64).log2();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .caption(caption, ("sans-serif", 15))
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(
                x(first) - 0.2..x(last) + 0.2,
                (lo - 2.0).floor()..(hi + 2.0).ceil(),
            )
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("N (training rows per target, log scale)")
            .y_desc("accuracy (%)")
            .x_label_formatter(&|v| format!("{:.0}", 2f64.powf(*v)))
            .x_labels(ns.len() + 2)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;
        let palette = [
            RGBColor(100, 100, 100),
            RGBColor(37, 99, 235),
            RGBColor(220, 38, 38),
            RGBColor(234, 88, 12),
            RGBColor(22, 163, 74),
            RGBColor(147, 51, 234),
            RGBColor(8, 145, 178),
            RGBColor(190, 24, 93),
        ];
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = palette[i % palette.len()];
            let pts: Vec<(f64, f64)> = pts.iter().map(|&(n, v)| (x(n), v)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|x| e(&x))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|x| e(&x))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The charts go into the page as HTML (`inner_html`) and their captions carry task names:
    /// text must come out escaped.
    #[test]
    fn captions_and_names_are_escaped() {
        let evil = "<img src=x onerror=alert(1)>";
        let bins =
            crate::train::calibration::reliability(&[vec![0.9, 0.1], vec![0.2, 0.8]], &[0, 1]);
        for svg in [
            loss_svg(&[(1, 0.5), (2, 0.4)], evil),
            reliability_svg(&[(evil.to_string(), bins)], evil),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(!svg.contains("<img"), "{svg}");
            assert!(svg.contains("&lt;img"), "{svg}");
        }
    }
}
