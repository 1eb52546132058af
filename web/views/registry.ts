/**
 * The views a pane can show, in tab order. Every view works on any open
 * image and takes the same props; a view is a folder under views/.
 */
import type { Component } from 'svelte';
import type { OpenImage, Workbench } from '../lib/workbench.svelte.ts';
import InfoView from './info/InfoView.svelte';

export interface ViewProps {
  wb: Workbench;
  image: OpenImage;
}

export interface ViewEntry {
  id: string;
  label: string;
  component: Component<ViewProps>;
}

export const VIEWS: ViewEntry[] = [{ id: 'info', label: 'Info', component: InfoView }];
