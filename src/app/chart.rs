//! The charts of the page as SVGs drawn by `plotters`: the loss curve, and the reliability
//! diagram (predicted confidence against observed accuracy) of the evaluation.

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
    methods: &[(String, Vec<crate::worker::protocol::Bin>)],
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
    methods: &[(String, Vec<crate::worker::protocol::Bin>)],
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
