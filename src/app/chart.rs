//! The loss curve as an SVG drawn by `plotters`.

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
