/**
 * The views a pane can show, in tab order. Every view works on any open
 * image and takes the same props; a view is a folder under views/.
 */
import type { Component } from 'svelte';
import type { OpenImage, Workbench } from '../lib/workbench.svelte.ts';
import InfoView from './info/InfoView.svelte';
import CompareView from './compare/CompareView.svelte';
import MapView from './map/MapView.svelte';
import CheckView from './check/CheckView.svelte';
import MeasureView from './measure/MeasureView.svelte';
import ConvertView from './convert/ConvertView.svelte';
import SparsifyView from './sparsify/SparsifyView.svelte';

export interface ViewProps {
  wb: Workbench;
  image: OpenImage;
}

export interface ViewEntry {
  id: string;
  label: string;
  component: Component<ViewProps>;
}

export const VIEWS: ViewEntry[] = [{ id: 'info', label: 'Info', component: InfoView }, { id: 'map', label: 'Map', component: MapView }, { id: 'check', label: 'Check', component: CheckView }, { id: 'compare', label: 'Compare', component: CompareView }, { id: 'convert', label: 'Convert', component: ConvertView }, { id: 'sparsify', label: 'Sparsify', component: SparsifyView }, { id: 'measure', label: 'Measure', component: MeasureView }];
