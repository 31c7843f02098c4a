//! The session's persistence: the workspace as a bundle (saved by the page after every change),
//! restoring it, and importing a workspace or one task's adapter zip. Everything a file holds is
//! checked before anything in the session is replaced.

use std::collections::BTreeMap;

use super::{Fusion, Host, Session, Task, Trained};
use crate::error::{Error, Result};
use crate::fusion::files as fusion_files;
use crate::worker::protocol::Event;
use crate::workspace::bundle::{self, TaskSettings, Upload, Workspace};
use crate::workspace::task_files::{self, TaskMeta};

impl Session {
    /// The persistent part of the session.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            tasks: self.tasks.iter().map(|t| t.state.clone()).collect(),
            fusion: self.fusion.as_ref().map(|f| f.files.clone()),
        }
    }

    /// Replaces the session's tasks and fusion with a saved workspace's. An adapter or a fusion
    /// that no longer loads (trained on another encoder than the one now running) is dropped with
    /// a notice when the page restores its own saved workspace, the task's data and settings kept;
    /// when `strict` (a zip the user imports) it is an error like anything else wrong.
    pub(super) async fn restore<H: Host>(
        &mut self,
        ws: Workspace,
        strict: bool,
        host: &H,
    ) -> Result<()> {
        let mut tasks = Vec::new();
        for state in ws.tasks {
            let mut state = state;
            let trained = match &state.adapter {
                Some(files) => match self.load_trained(files) {
                    Ok((trained, _)) => Some(trained),
                    Err(e) if strict => return Err(e),
                    Err(e) => {
                        host.emit(Event::Notice(format!(
                            "the adapter of task {:?} was not loaded ({e}); its data and \
                             settings are kept: train it again",
                            state.name
                        )));
                        state.adapter = None;
                        None
                    }
                },
                None => None,
            };
            let mut t = Task::new(state.name.clone());
            t.curve = trained
                .as_ref()
                .map(|x| x.history.clone())
                .unwrap_or_default();
            t.state = state;
            t.trained = trained;
            tasks.push(t);
        }
        self.tasks = tasks;
        self.fusion = None;
        if let Some(files) = ws.fusion {
            match self.load_fusion(files) {
                Ok(f) => self.fusion = Some(f),
                Err(e) if strict => return Err(e),
                Err(e) => host.emit(Event::Notice(format!(
                    "the saved fusion was not loaded ({e}); train it again"
                ))),
            }
        }
        Ok(())
    }

    /// Imports a workspace zip (replacing everything, only once all of it loaded) or one task's
    /// adapter zip (ours or PEFT's).
    pub(super) async fn import<H: Host>(
        &mut self,
        file_name: &str,
        bytes: &[u8],
        host: &H,
    ) -> Result<()> {
        match bundle::classify(bytes)? {
            Upload::Workspace(ws) => {
                let mut fresh = Session::new(self.engine.clone());
                fresh.restore(ws, true, host).await?;
                self.tasks = fresh.tasks;
                self.fusion = fresh.fusion;
                Ok(())
            }
            Upload::Task(files) => self.import_task(file_name, files, host),
        }
    }

    /// A task's adapter folder loaded for use, with its metadata (if the folder has it).
    fn load_trained(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(Trained, Option<TaskMeta>)> {
        // Another base model's adapter is refused before its weights are read (their shapes
        // could even fit, and the predictions would be nonsense).
        if let Some(meta) = task_files::peek_meta(files) {
            self.engine
                .check_trained_on(&meta.base_model, &meta.base_model_sha256)?;
        }
        let loaded =
            task_files::from_files(files, &self.engine.encoder.config, &self.engine.device)?;
        let meta = loaded.meta;
        let trained = Trained {
            labels: meta.as_ref().map(|m| m.labels.clone()).unwrap_or_default(),
            history: meta.as_ref().map(|m| m.history.clone()).unwrap_or_default(),
            adapter: loaded.adapter,
            head: loaded.head,
            sha256: loaded.adapter_sha256,
            temperature: meta.as_ref().map_or(1.0, |m| m.temperature),
            epochs_planned: meta.as_ref().map_or(0, |m| {
                m.train.stage1_epochs(m.train_examples, m.labels.len())
            }),
        };
        Ok((trained, meta))
    }

    fn load_fusion(&self, files: BTreeMap<String, Vec<u8>>) -> Result<Fusion> {
        let (manifest, layers, heads) = fusion_files::from_files(
            &files,
            self.engine.encoder.config.hidden_size,
            &self.engine.device,
        )?;
        // A fused model always records its base model (unlike a plain PEFT adapter).
        if manifest.base_model_sha256.is_empty() {
            return Err(Error::Fusion("it records no base model".into()));
        }
        self.engine
            .check_trained_on(&manifest.base_model, &manifest.base_model_sha256)?;
        let shas: Vec<Option<&str>> = self
            .tasks
            .iter()
            .map(|t| t.trained.as_ref().map(|x| x.sha256.as_str()))
            .collect();
        let want: Vec<Option<&str>> = manifest
            .adapters
            .iter()
            .map(|a| Some(a.adapter_sha256.as_str()))
            .collect();
        if shas != want {
            return Err(Error::Fusion(
                "its adapters are not the workspace's current adapters".into(),
            ));
        }
        Ok(Fusion {
            manifest,
            layers,
            heads,
            files,
        })
    }

    fn import_task<H: Host>(
        &mut self,
        file_name: &str,
        files: BTreeMap<String, Vec<u8>>,
        host: &H,
    ) -> Result<()> {
        let (trained, loaded_meta) = self.load_trained(&files)?;
        let name = loaded_meta
            .as_ref()
            .map(|m| m.task.clone())
            .unwrap_or_else(|| {
                file_name
                    .trim_end_matches(".zip")
                    .trim_end_matches("-adapter")
                    .to_string()
            });
        let i = match self.index(&name) {
            Ok(i) => i,
            Err(_) => {
                let name = self.check_new_name(&name)?;
                self.tasks.push(Task::new(name));
                self.tasks.len() - 1
            }
        };
        if trained.head.is_none() {
            host.emit(Event::Notice(format!(
                "{file_name}: a PEFT adapter without a classifier head; task {name:?} can predict \
                 after training"
            )));
        }
        let t = &mut self.tasks[i];
        if let Some(m) = &loaded_meta {
            t.state.settings = TaskSettings {
                lora: m.lora.clone(),
                train: m.train.clone(),
                holdout: t.state.settings.holdout,
                answer: t.state.settings.answer,
                start: t.state.settings.start.clone(),
            };
        }
        t.state.adapter = Some(files);
        t.curve = trained.history.clone();
        t.trained = Some(trained);
        self.drop_fusion(host, "an adapter was replaced");
        Ok(())
    }
}
